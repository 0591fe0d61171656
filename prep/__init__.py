"""List files -> frame-decoded tar shards, plus the synthetic demo dataset. A client of `svformer`:
video decoding (`svformer.video`) and list reading (`svformer.lists`) live there, since predict needs
them too; nothing in `svformer` imports prep.

Modules (each one job):
    split           the stratified labeled/unlabeled/val split of a labeled list, and list writing
    tarfmt          deterministic tar members and one shard file (temp name, rename, sidecar)
    manifest        manifest.json / failures.tsv, merging the manifests of `--part` runs
    shards          the prep run: parallel decode, list-order writing, rollover, resume, parts
    synth           the synthetic demo action dataset (classes that need time to tell apart)
    synth_pretrain  the synthetic pretraining videos (`synth --kind pretrain`)
    inspect_shards  what a shard holds, and `--verify`
"""
