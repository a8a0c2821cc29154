"""The paper's parts as pure ``nn.Module``s and functions: no recipe state, no files written.

One idea per module, in the order of the paper: global k-max pooling (Sec. 3, :mod:`.pooling`), the
embedding layer (:mod:`.embedding`) and its class-mean losses (Sec. 4, :mod:`.losses`), the localization
module and the heatmap → box step (Sec. 5, :mod:`.localization`), the one crop (:mod:`.crop`), backbones
(:mod:`.backbones`, offline ImageNet weights in :mod:`.pretrained`, weight files in :mod:`.weights`) and
the model of Fig. 1 (:mod:`.model`).
"""
