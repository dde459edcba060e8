"""The parts of the :class:`~sleeptime.SleepTime` facade (``sleeptime/api.py``), one
concern per module: what they share (:mod:`~sleeptime.facade.base`), contexts
(:mod:`~sleeptime.facade.contexts`), answering (:mod:`~sleeptime.facade.asking`),
deletion (:mod:`~sleeptime.facade.deletion`), and the worker's port onto a client
(:mod:`~sleeptime.facade.port`). Import the facade from ``sleeptime`` or
``sleeptime.api``; these modules are its inside.
"""
