from tests.pipeline_support.fixtures import app_config, config_path, redis_conn, redis_database, redis_url  # noqa: F401
