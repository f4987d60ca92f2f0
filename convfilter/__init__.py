"""convfilter: image convolution from the command line, byte-identical to Pillow where Pillow can do the job."""

__version__ = "0.1.0"
