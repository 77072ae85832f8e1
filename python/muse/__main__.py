"""python -m muse: print muse.env(), one field a line."""

from . import env

for key, value in env().items():
    print("%s: %s" % (key, value))
