"""Trials without a sequencer or a GPU: real `.pod5` files, a MinKNOW-like run, a
stand-in for dorado, and the demo that puts them together with the exactly-once proof.

Owns the pod5 writer and reader (`pod5_files`, the only module that imports the pod5
library and numpy, which the `sim` extra installs), the live-run simulator, the fake
basecaller (`fake_basecaller`: FASTQ into pass/ and fail/; with `--dorado`,
`dorado_reads` and `dorado_stream`: dorado's stream on stdout, written with pysam) and
the demo.

May import: the standard library, `reactor.core` and `reactor.sim`, pod5 and numpy
(only inside `pod5_files`, and that only when a command needs it), and pysam (in
`dorado_stream`).
"""
