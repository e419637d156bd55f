from tests.pipeline_support.fixtures import (  # noqa: F401
    app_config,
    config_path,
    module_redis_url,
    redis_conn,
    redis_database,
    redis_url,
)
