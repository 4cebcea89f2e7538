"""Tiny demo models served by ``reprohub demo`` (and ``reprohub serve``)."""
import os

dependencies = ["torch"]


def tiny_mlp(pretrained=False, hidden=8):
    """A two-layer MLP (3 -> hidden -> 2).

    pretrained (bool): load weights from the demo host ($REPROHUB_DEMO_FILES/tiny_mlp-v1.pt).
    """
    import torch

    from tinynet.model import TinyMLP

    model = TinyMLP(hidden)
    if pretrained:
        url = os.environ["REPROHUB_DEMO_FILES"].rstrip("/") + "/tiny_mlp-v1.pt"
        model.load_state_dict(torch.hub.load_state_dict_from_url(url, progress=False))
    return model
