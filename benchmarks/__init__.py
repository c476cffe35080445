"""dpxattn.benchmarks (folder `benchmarks/`)."""

from dpxattn._guard import require_mapped

require_mapped(__name__, "dpxattn.benchmarks")
del require_mapped

__all__: list[str] = []
