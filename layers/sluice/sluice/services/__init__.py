"""Each function's composition, in one module per function: settings -> clients -> ports -> the service its
handler calls. Handlers take their service as a parameter (default: the one wired here from the environment), so
tests hand them fakes or real adapters of their choosing."""

from collections.abc import Callable
from functools import cache

from sluice.settings import in_lambda_environment


def per_environment[Service](wire: Callable[[], Service]) -> Callable[[], Service]:
    """The service ``wire`` builds, once per execution environment. In a Lambda execution environment it is built
    while the environment initialises: a function missing a setting fails its init with an error that names the
    setting, instead of failing each event later (or quietly using a development default)."""
    get_service = cache(wire)
    if in_lambda_environment():
        get_service()
    return get_service
