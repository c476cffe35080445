"""dpxattn.verification (folder `verification/`)."""

from dpxattn._guard import require_mapped

require_mapped(__name__, "dpxattn.verification")
del require_mapped

__all__: list[str] = []
