.PHONY: run test install web worker beat migrate receiver

# Everything on one machine: worker + web server on http://127.0.0.1:8000/ (PORT, HOST). Ctrl-C stops it.
run:
	scripts/run.sh

# The whole test suite against PostgreSQL and Redis; `scripts/test.sh tests/accounts -q` for one app.
test:
	scripts/test.sh

install:
	scripts/bootstrap.sh

# Scale-out: one role per machine (README, "Scale-out").
web:
	scripts/run.sh web

worker:
	scripts/run.sh worker

migrate:
	scripts/run.sh migrate

beat:
	scripts/run.sh beat

# The DICOM receiver the PACS pushes series to (DICOM_RECEIVER_PEERS; README, "PACS"): one per installation.
receiver:
	scripts/run.sh receiver
