"""Each function's composition, in one module per function: settings -> clients -> ports -> the service its
handler calls. Handlers take their service as a parameter (default: the one wired here from the environment), so
tests hand them fakes or real adapters of their choosing."""
