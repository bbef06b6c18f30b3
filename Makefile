.PHONY: run test install
install:
	scripts/bootstrap.sh
run:
	scripts/run.sh
test:
	scripts/test.sh
