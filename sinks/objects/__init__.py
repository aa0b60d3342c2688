"""Object storage: the region's bucket (:mod:`~sinks.objects.store`) and where each artifact of
a call lives in it (:mod:`~sinks.objects.layout`)."""
