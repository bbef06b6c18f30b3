from tests.inference.conftest import _fast_password_hashing, random_bundle  # noqa: F401  (fixtures)
