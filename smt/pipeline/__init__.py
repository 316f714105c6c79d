"""The orchestration layer, the only one that knows the schedulers.

The stage model and table (`stage`, `stages`), the graph of instances (`graph`), code dependencies
(`codedeps`), params (`params`), the stage context (`context`), provenance, params stamps, external content
fingerprints, GPU placement, the runtime guard, the stage runner, and the Snakemake and DVC renderers. The domain
packages (`smt.synth`, `smt.rag`, `smt.eval`, `smt.train`, `smt.benchmarks`) never import it; the stage adapters
under `smt.stages` connect the two.
"""
