"""Running repo code: import ``hubconf.py`` in isolation and route torch.hub's functions while it runs.

* :mod:`~reprohub.runtime.hubconf` -- isolated imports, entrypoints, dependencies;
* :mod:`~reprohub.runtime.intercept` -- torch.hub's functions forwarded to the current Hub;
* :mod:`~reprohub.runtime.context` -- which Hub is current (below both, so neither imports the other).
"""
