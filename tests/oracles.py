"""What the tests compare with, shared by the test modules that use it."""

#: convfilter border mode -> scipy.ndimage mode of the same padding (``wrap``
#: is SciPy's ``grid-wrap``: SciPy's own ``wrap`` differs for some filters).
SCIPY_MODES = {
    "nearest": "nearest",
    "reflect": "reflect",
    "mirror": "mirror",
    "wrap": "grid-wrap",
    "constant": "constant",
}
