"""How settings are written in file names and labels. Imports nothing heavy: the Snakefile reads it."""


def format_number(value) -> str:
    """A setting as people write it: 1, 10, 0.5, 1e6 (not 1000000.0 or 1e+06)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    mantissa, _, exponent = f"{value:g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa
