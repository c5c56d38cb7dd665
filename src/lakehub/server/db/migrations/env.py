from alembic import context

from lakehub.server.db import Base, make_engine
from lakehub.server.jobs import tables as _jobs_tables  # noqa: F401
from lakehub.server.models import tables as _model_tables  # noqa: F401  (their tables too)
from lakehub.server.ops import tables as _ops_tables  # noqa: F401
from lakehub.server.publish import tables as _publish_tables  # noqa: F401
from lakehub.server.serving import tables as _serving_tables  # noqa: F401

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url
engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
