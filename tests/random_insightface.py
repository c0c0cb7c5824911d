"""Random-weight ONNX models in the on-disk format of insightface's buffalo_l pack.

insightface's own loaders (``model_zoo.get_model``) take them as SCRFD and ArcFaceONNX, so the
real loading and inference code runs in tests with no download.

Writes OUTDIR/det_10g.onnx (SCRFD-10G-like: ResNet stem+4 stages, PAFPN neck,
3x3 conv heads, 9 outputs) and OUTDIR/w600k_r50.onnx (IResNet-50 layout,
input [N,3,112,112] -> [N,512]).  'tiny' keeps the exact interfaces but few
channels/blocks (fast tests).  Interfaces mirror buffalo_l:
  det : input 'input.1' float [1,3,'?','?']; outputs (graph order!)
        score_8,16,32 [K,1] | bbox_8,16,32 [K,4] | kps_8,16,32 [K,10],
        K = (H/s)*(W/s)*2, rows ordered (y, x, anchor)
  rec : input 'input.1' float ['N',3,112,112]; output 'embedding' ['N',512]
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET, IR_VERSION = 13, 8   # loadable by any onnxruntime >= 1.10

PROFILES = {
    # detector: stem, stage planes, blocks, neck, head channels, head convs;
    # recognizer: stage widths, blocks
    "full": dict(det_stem=28, det_planes=(56, 88, 88, 224), det_blocks=(3, 4, 2, 3),
                 neck=56, head=80, head_convs=3,
                 rec_planes=(64, 128, 256, 512), rec_blocks=(3, 4, 14, 3)),
    "tiny": dict(det_stem=8, det_planes=(8, 16, 16, 32), det_blocks=(1, 1, 1, 1),
                 neck=16, head=16, head_convs=1,
                 rec_planes=(8, 16, 16, 32), rec_blocks=(1, 1, 1, 1)),
}


class Graph:
    """Tiny onnx.helper wrapper that tracks (C,H,W) at a reference size for FLOP counts."""

    def __init__(self, rng, ref_hw):
        self.rng, self.nodes, self.inits, self.n, self.macs = rng, [], [], 0, 0
        self.shape = {"input.1": (3, *tuple(ref_hw))}

    def _name(self, op):
        self.n += 1
        return f"{op}_{self.n}"

    def const(self, arr, hint="w"):
        name = self._name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op, inputs, shape=None, **attrs):
        # Never 'Sub*'/'Mul*': ArcFaceONNX would switch to mean 0 / std 1.
        name = self._name(op)
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        if shape is not None:
            self.shape[name] = shape
        return name

    def conv(self, x, cout, k=3, s=1, gain=1.0, bias=0.0, relu=False, prelu=False):
        cin, h, w = self.shape[x]
        std = gain * np.sqrt(2.0 / (cin * k * k))
        W = self.const((self.rng.standard_normal((cout, cin, k, k)) * std).astype(np.float32))
        B = self.const(np.broadcast_to(np.asarray(bias, np.float32), (cout,)).copy(), "b")
        ho, wo = (h + s - 1) // s, (w + s - 1) // s
        self.macs += cout * cin * k * k * ho * wo
        y = self.node("Conv", [x, W, B], (cout, ho, wo), kernel_shape=[k, k],
                      strides=[s, s], pads=[k // 2] * 4)
        if relu:
            y = self.node("Relu", [y], (cout, ho, wo))
        if prelu:
            slope = self.const(np.full((cout, 1, 1), 0.25, np.float32), "slope")
            y = self.node("PRelu", [y, slope], (cout, ho, wo))
        return y

    def inorm(self, x):
        c = self.shape[x][0]
        return self.node("InstanceNormalization",
                         [x, self.const(np.ones(c, np.float32), "gamma"),
                          self.const(np.zeros(c, np.float32), "beta")], self.shape[x])

    def add(self, a, b, relu=False):
        y = self.node("Add", [a, b], self.shape[a])
        return self.node("Relu", [y], self.shape[a]) if relu else y


# ----------------------------------------------------------------------------- SCRFD
def _basic_block(g, x, cout, stride):
    y = g.conv(x, cout, 3, stride, relu=True)
    y = g.conv(y, cout, 3, 1, gain=0.3)
    sc = x if (stride == 1 and g.shape[x][0] == cout) else g.conv(x, cout, 1, stride)
    return g.add(y, sc, relu=True)


def build_scrfd(p, rng, ref_hw=(640, 640), score_gain=0.5, score_bias=-3.75):
    g = Graph(rng, ref_hw)
    x = g.conv("input.1", p["det_stem"], 3, 2, relu=True)            # stride 2
    x = g.conv(x, p["det_stem"], 3, 1, relu=True)
    x = g.conv(x, p["det_planes"][0], 3, 1, relu=True)
    c, h, w = g.shape[x]
    x = g.node("MaxPool", [x], (c, (h + 1) // 2, (w + 1) // 2),
               kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # stride 4
    feats = []
    for i, (planes, nb) in enumerate(zip(p["det_planes"], p["det_blocks"], strict=False)):
        for b in range(nb):
            x = _basic_block(g, x, planes, 2 if (b == 0 and i > 0) else 1)
        if i > 0:
            feats.append(x)                                           # strides 8, 16, 32
    # PAFPN neck: lateral 1x1, top-down nearest upsample, 3x3 fpn, bottom-up path
    lat = [g.conv(f, p["neck"], 1) for f in feats]
    for i in (1, 0):
        size = g.node("Shape", [lat[i]])
        up = g.node("Resize", [lat[i + 1], "", "", size], g.shape[lat[i]], mode="nearest")
        lat[i] = g.add(lat[i], up)
    outs = [g.conv(level, p["neck"], 3, relu=True) for level in lat]
    for i in (1, 2):
        outs[i] = g.add(outs[i], g.conv(outs[i - 1], p["neck"], 3, 2), relu=True)
    # heads (2 anchors per location)
    A = 2
    face = np.array([[-.7, -.6], [.7, -.6], [0, .1], [-.6, .8], [.6, .8]], np.float32).ravel()
    heads = {"score": [], "bbox": [], "kps": []}
    for stride, f in zip((8, 16, 32), outs, strict=False):
        t = f
        for _ in range(p["head_convs"]):
            t = g.conv(t, p["head"], 3, relu=True)
        # GN-like: unit-variance head features whatever the random backbone does
        t = g.inorm(t)
        # score: sigmoid(0.5*conv - 3.75): a logit > 0 needs a ~7.5-sigma (heavy-tailed) response,
        # so only a handful of anchors pass det_thresh 0.5 (tuned on astronaut + noise images)
        cls = g.node("Sigmoid", [g.conv(t, A * 1, 3, gain=score_gain, bias=score_bias)])
        # distances (in stride units, SCRFD multiplies by stride): ~2 -> boxes ~4*stride
        reg = g.node("Relu", [g.conv(t, A * 4, 3, gain=0.2, bias=2.0)])
        # keypoints: a face-like 5-point layout around the anchor + small noise
        kps = g.conv(t, A * 10, 3, gain=0.05, bias=np.tile(face * 2.0, A))
        for key, y, ch in (("score", cls, 1), ("bbox", reg, 4), ("kps", kps, 10)):
            y = g.node("Transpose", [y], perm=[0, 2, 3, 1])          # [1,H,W,A*ch]
            shp = g.const(np.array([-1, ch], np.int64), "shape")
            out = f"{key}_{stride}"
            g.nodes.append(helper.make_node("Reshape", [y, shp], [out], name=f"Reshape_{out}"))
            heads[key].append((out, ch))
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"{name}_rows", ch])
               for key in ("score", "bbox", "kps") for name, ch in heads[key]]
    inp = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])
    graph = helper.make_graph(g.nodes, "scrfd_random", [inp], outputs, g.inits)
    return _finish(graph), g.macs


# ----------------------------------------------------------------------------- ArcFace
def build_arcface(p, rng, emb=512):
    g = Graph(rng, (112, 112))
    x = g.conv("input.1", p["rec_planes"][0], 3, 1, prelu=True)          # 112
    # IBasicBlock stages, stride 2 first
    for planes, nb in zip(p["rec_planes"], p["rec_blocks"], strict=True):
        for b in range(nb):
            s = 2 if b == 0 else 1
            y = g.conv(x, planes, 3, 1, prelu=True)
            y = g.conv(y, planes, 3, s, gain=0.3)
            sc = x if (s == 1 and g.shape[x][0] == planes) else g.conv(x, planes, 1, s)
            x = g.add(y, sc)
    c, h, w = g.shape[x]                                                # 512 x 7 x 7
    x = g.inorm(x)                                                      # stands in for bn2
    flat = g.node("Flatten", [x], (c * h * w,), axis=1)
    scale = 22.0 / np.sqrt(emb * c * h * w)  # embedding norm ~22, like real ArcFace
    W = g.const((rng.standard_normal((emb, c * h * w)) * scale).astype(np.float32))
    B = g.const(np.zeros(emb, np.float32), "b")
    g.macs += emb * c * h * w
    g.nodes.append(helper.make_node("Gemm", [flat, W, B], ["embedding"], name="Gemm_fc", transB=1))
    inp = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", emb])
    graph = helper.make_graph(g.nodes, "arcface_random", [inp], [out], g.inits)
    return _finish(graph), g.macs


def _finish(graph):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="voice-assets tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def make_models(outdir, profile="full", seed=0):
    os.makedirs(outdir, exist_ok=True)
    p = PROFILES[profile]
    rng = np.random.default_rng(seed)
    det, _det_macs = build_scrfd(p, rng)
    rec, _rec_macs = build_arcface(p, rng)
    det_path = os.path.join(outdir, "det_10g.onnx")
    rec_path = os.path.join(outdir, "w600k_r50.onnx")
    onnx.save(det, det_path)
    onnx.save(rec, rec_path)
    return det_path, rec_path

