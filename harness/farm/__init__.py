"""The device farm: many phones on many hosts, measured at once through Ray.

A host joins the farm with ``bench farm join`` (``ray start`` with its attached
devices announced as Ray custom resources, :mod:`harness.farm.cluster`); each
device is driven by one actor placed on its host (:mod:`harness.farm.actor`),
so two jobs never share a phone; a farm sweep (:mod:`harness.farm.sweep`)
hands groups of signatures to the actors and writes every LUT on the driver
through the same locked, atomic, resumable writer as a one-device sweep
(actors return rows, never write files).  ``bench farm status``
(:mod:`harness.farm.status`) shows hosts and devices.

May import the rest of the harness; the optimizer and the CLI import it, never
the reverse.  Ray is imported lazily, so that a one-machine sweep never loads it.
"""
