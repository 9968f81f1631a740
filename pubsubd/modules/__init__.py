"""Protocol modules, one per RFC section or XEP.

What loads, in which order and with which dependencies, is written out in
:func:`pubsubd.composition.build_modules`.
"""
