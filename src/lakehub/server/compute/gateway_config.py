# dask-gateway-server configuration generated from LakeHub settings; run as
# `dask-gateway-server -f <this file>` by the supervisor, with LAKEHUB_DATA_DIR in the environment.
import os

from cryptography.fernet import Fernet
from dask_gateway_server.options import Float, Integer, Options

from lakehub.server.compute.dask_gateway import GATEWAY_SERVICE, scheduler_python
from lakehub.server.config import load_settings
from lakehub.server.runtime import load_runtime, tokens
from lakehub.server.vault import read_or_create

c = get_config()  # type: ignore[name-defined]  # noqa: F821
settings = load_settings()
runtime = load_runtime(settings)
assert runtime is not None, "start dask-gateway through 'lakehub up'"
tok = tokens(settings)
p = runtime.ports
state = settings.state_dir / "dask-gateway"
state.mkdir(mode=0o700, exist_ok=True)

# The proxy (HTTP API + dashboards, and the schedulers' TLS port) on loopback; the hub's front
# door forwards /services/dask-gateway/ to it. Dashboards go through the gateway's web app, which
# shows each to its owner only (lakehub.server.compute.dashboards).
c.Proxy.address = f"127.0.0.1:{p['gateway']}"
c.Proxy.tcp_address = f"{settings.compute_bind}:{p['gateway_tcp']}"
c.Proxy.prefix = f"/services/{GATEWAY_SERVICE}"
c.Proxy.api_token = read_or_create(state / "proxy.token")

c.DaskGateway.authenticator_class = (
    "lakehub.server.compute.gateway_backend.HubOrServiceAuthenticator"
)
c.HubOrServiceAuthenticator.jupyterhub_api_url = runtime.hub_api_url
c.HubOrServiceAuthenticator.jupyterhub_api_token = tok.gateway
c.HubOrServiceAuthenticator.jupyterhub_service_name = GATEWAY_SERVICE
c.HubOrServiceAuthenticator.lakehub_token = tok.service
c.HubOrServiceAuthenticator.public_prefix = c.Proxy.prefix  # dashboards' logins come back there
c.HubOrServiceAuthenticator.public_url = runtime.front_url

backend = "UserLocalBackend" if settings.isolated else "SharedAccountBackend"
c.DaskGateway.backend_class = f"lakehub.server.compute.gateway_backend.{backend}"
b = getattr(c, backend)
b.lakehub_api_url = runtime.api_url
b.lakehub_token = tok.service
b.compute_bind = settings.compute_bind
# clusters outlive a restart of the gateway: their records are in its database
b.db_url = f"sqlite:///{state / 'gateway.sqlite'}"
b.db_encrypt_keys = [read_or_create(state / "db.key", Fernet.generate_key())]
b.stop_clusters_on_shutdown = False
clusters = settings.data_dir / "compute" / "dask"  # each cluster's own folder (0700) inside
clusters.mkdir(parents=True, exist_ok=True)
for path in (clusters.parent, clusters):
    path.chmod(0o711)  # the owners' accounts pass through to their cluster's folder
b.clusters_directory = str(clusters)
b.inherited_environment = ["LANG", "LC_ALL"]
if settings.isolated:
    b.homes_dir = str(settings.homes_dir)
python = scheduler_python(settings)
if settings.warm_start:  # schedulers and nannies forked with distributed imported (dask_warm)
    b.warm_python = str(python)
    b.warm_socket = str(settings.run_dir / "dask-warm.sock")
c.ClusterConfig.scheduler_cmd = [str(python.parent / "dask"), "scheduler"]
c.ClusterConfig.worker_cmd = [str(python.parent / "dask"), "worker"]
c.ClusterConfig.environment = {
    "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
    "LAKEHUB_HUB_ID": str(settings.data_dir),  # `lakehub down` stops them with the hub
    "HOME": os.environ.get("HOME", "/tmp"),
}


def _options(chosen: dict) -> dict:  # type: ignore[type-arg]
    return {
        "worker_cores": chosen["worker_cores"],
        "worker_memory": int(chosen["worker_memory"] * 2**30),
    }


c.Backend.cluster_options = Options(
    Integer(
        "worker_cores",
        default=1,
        min=1,
        max=int(settings.compute_max_worker_cores),
        label="Cores per worker",
    ),
    Float(
        "worker_memory",
        default=2,
        min=0.25,
        max=settings.compute_max_worker_memory / 2**30,
        label="Memory per worker (GiB)",
    ),
    Integer("idle_timeout", default=0, min=0, label="Idle timeout (s; 0: the hub's)"),
    handler=_options,
)
c.ClusterConfig.scheduler_cores = 1
c.ClusterConfig.scheduler_memory = 512 * 2**20  # counted in the owner's quota with the workers
c.ClusterConfig.idle_timeout = float(settings.compute_idle_timeout)
