"""What a paper author writes: load the published entrypoint, prove its outputs did not change."""
import torch


def test_tiny_mlp_outputs(hub, golden, hub_device):
    model = hub.load("demo/tiny:v1", "tiny_mlp", pretrained=True).to(hub_device).eval()
    with torch.no_grad():
        golden.check(model(golden.input(4, 3, device=hub_device)))


def test_entrypoints(hub):
    assert hub.list("demo/tiny:v1") == ["tiny_mlp"]
