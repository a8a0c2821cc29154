"""The model as one inference graph: the one-pass pipeline (:mod:`.pipeline`), ONNX / TorchScript export
(:mod:`.export`) and its check (:mod:`.check`), running an exported file (:mod:`.runtime`), batch-norm
folding (:mod:`.fuse`) and ``torch.compile`` (:mod:`.compiled`)."""
