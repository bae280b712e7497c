"""The data path as user space drives it: the embedded object (:mod:`.program`), its
rule maps (:mod:`.rules`), counters (:mod:`.counters`), event ring (:mod:`.events`), and
the conversion of older ABI versions' maps (:mod:`.migrate`)."""
