"""Bulletins from outside loa: CAP alerts parsed (``cap``) and planned for the speakers
(``mapping``)."""
