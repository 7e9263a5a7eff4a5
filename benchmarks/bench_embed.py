"""Benchmark of :func:`mmlib.embed.embed_texts` against plain sentence-transformers, in the same run.

Generates realistic clinical pseudo-notes (emergency-department triage notes of 40-250 tokens: arrival,
acuity, vital signs, history, medications, labs, ECG and chest X-ray reads, narrative), embeds them with
``SentenceTransformer(path).encode(texts, batch_size=64)`` and with ``embed_texts`` (each precision asked
for, a fresh cache so every text is really embedded, cache writes included), on the same model, and prints
the throughputs, their ratio, and the cosine similarity between the two sets of vectors. It also reports
how far a text's vector moves with the company it is embedded in (target 0: ``embed_texts`` gives the same
bytes whatever the batch): for ``--invariance`` notes, the largest absolute difference between the vector
from the timed run (in chunks, with its neighbours), the vector of the note embedded alone, and the vector
from a shuffled mix with other notes at another batch size -- for sentence-transformers too, for comparison.

Before and after: ``embed_texts`` of a git revision (``--baseline``, default ``HEAD``; ``--baseline ''`` for
none), loaded from ``git show <rev>:mmlib/embed.py``, is timed on the same notes at the first precision asked
for; the ratio baseline / working tree is printed, and its vectors must be the same bytes as the working tree's.

All are timed in alternation, chunk by chunk (the order flipping each chunk), so that the load of a shared
machine falls on all alike. The one-time export of the ONNX graphs is timed separately.

    .venv/bin/python benchmarks/bench_embed.py [--n 5000] [--precisions int8,fp32] [--chunks 5] [--invariance 200]
        [--baseline HEAD]
"""
from __future__ import annotations

import argparse
import random
import subprocess
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

TARGET_RATIO = 3.0
TARGET_COSINE = 0.99

_ARRIVAL = ["by ambulance", "as a walk-in", "by helicopter", "with police", "by private car",
            "on transfer from an outside hospital"]
_COMPLAINT = ["chest pain", "shortness of breath", "abdominal pain", "syncope", "fever and cough",
              "altered mental status", "palpitations", "a fall with head strike", "headache", "generalized weakness",
              "low back pain", "nausea and vomiting", "left leg swelling", "dizziness", "hematemesis"]
_HISTORY = ["hypertension", "type 2 diabetes mellitus", "chronic kidney disease stage 3", "COPD on home oxygen",
            "heart failure with reduced ejection fraction", "atrial fibrillation on apixaban",
            "coronary artery disease status post PCI", "asthma", "hyperlipidemia", "obesity", "depression",
            "cirrhosis", "prior stroke with residual left-sided weakness", "HIV on antiretroviral therapy"]
_MEDS = ["metoprolol 25 mg twice daily", "lisinopril 10 mg daily", "metformin 500 mg twice daily",
         "atorvastatin 40 mg nightly", "furosemide 40 mg daily", "apixaban 5 mg twice daily", "albuterol as needed",
         "aspirin 81 mg daily", "insulin glargine 20 units", "sertraline 50 mg daily", "tiotropium inhaler"]
_LABS = [("troponin T", "ng/mL", 0.0, 2.5, 2), ("lactate", "mmol/L", 0.6, 9.0, 1), ("creatinine", "mg/dL", 0.5, 6.0, 1),
         ("sodium", "mmol/L", 118, 152, 0), ("potassium", "mmol/L", 2.8, 6.9, 1), ("WBC", "K/uL", 2.0, 28.0, 1),
         ("hemoglobin", "g/dL", 5.5, 17.0, 1), ("BNP", "pg/mL", 20, 4500, 0), ("glucose", "mg/dL", 45, 520, 0),
         ("D-dimer", "ng/mL FEU", 150, 6000, 0)]
_ECG = ["ECG: sinus tachycardia, rate {hr}/min, no acute ST changes.",
        "ECG: atrial fibrillation with rapid ventricular response, rate {hr}/min.",
        "ECG: normal sinus rhythm, left ventricular hypertrophy by voltage criteria.",
        "ECG: sinus rhythm with ST elevation in II, III and aVF and reciprocal depression in aVL.",
        "ECG: sinus bradycardia, rate {hr}/min, first-degree AV block, QTc 489 ms."]
_CXR = ["Chest X-ray: no acute cardiopulmonary process.",
        "Chest X-ray: mild cardiomegaly with small bilateral pleural effusions and vascular congestion.",
        "Chest X-ray: right lower lobe consolidation concerning for pneumonia.",
        "Chest X-ray: no pneumothorax; hyperinflated lungs consistent with emphysema.",
        "Chest X-ray: moderate left pleural effusion with adjacent atelectasis."]
_NARRATIVE = ["Symptoms began two days ago and have progressively worsened despite rest.",
              "Family at bedside states the patient was in the usual state of health until this morning.",
              "Denies recent travel, sick contacts, or new medications. Lives alone and ambulates with a cane.",
              "Per EMS, received 324 mg aspirin and sublingual nitroglycerin en route with partial relief.",
              "Reports intermittent diaphoresis and radiation of the pain to the left arm.",
              "Nursing notes poor oral intake for three days and decreased urine output.",
              "On exam the patient is alert and oriented, with bibasilar crackles and 2+ pitting edema to the knees.",
              "Initial management included two liters of crystalloid, blood cultures and broad-spectrum antibiotics.",
              "Interpreter used; patient prefers Spanish. Advance directive on file, full code."]
_DISPO = ["Disposition: admitted to telemetry.", "Disposition: admitted to the ICU.", "Disposition: discharged home.",
          "Disposition: transferred to the cath lab.", "Disposition: observation unit for serial troponins."]


def make_notes(n: int, tokenizer, seed: int = 0, lo: int = 40, hi: int = 250) -> list[str]:
    """``n`` emergency-department pseudo-notes of ``lo``-``hi`` tokens (token lengths spread evenly)."""
    rng = random.Random(seed)
    notes = []
    while len(notes) < n:
        target = rng.randint(lo, hi)
        hr = rng.randint(42, 168)
        head = [f"Patient is a {rng.randint(18, 97)}-year-old {rng.choice(['man', 'woman'])} arriving "
                f"{rng.choice(_ARRIVAL)} with {rng.choice(_COMPLAINT)}.", f"Triage acuity {rng.randint(1, 5)}."]
        vitals = [f"Temperature {rng.uniform(95.8, 104.0):.1f} °F", f"heart rate {hr}/min",
                  f"respiratory rate {rng.randint(10, 36)}/min", f"SpO2 {rng.randint(82, 100)}%",
                  f"blood pressure {rng.randint(78, 212)}/{rng.randint(38, 124)} mmHg", f"pain {rng.randint(0, 10)}/10"]
        labs = rng.sample(_LABS, rng.randint(1, 6))
        pool = [", ".join(vitals[:rng.randint(2, 6)]) + ".",
                "Past medical history: " + ", ".join(rng.sample(_HISTORY, rng.randint(1, 5))) + ".",
                "Home medications: " + ", ".join(rng.sample(_MEDS, rng.randint(1, 5))) + ".",
                "Labs: " + ", ".join(f"{name} {rng.uniform(a, b):.{d}f} {unit}" for name, unit, a, b, d in labs) + ".",
                rng.choice(_ECG).format(hr=hr), rng.choice(_CXR), rng.choice(_DISPO),
                *rng.sample(_NARRATIVE, 4)]
        rng.shuffle(pool)
        pool.insert(0, pool.pop(next(i for i, s in enumerate(pool) if s.startswith(("Temperature", "heart")))))
        note, length = " ".join(head), len(tokenizer.tokenize(" ".join(head))) + 2
        for s in pool:
            if length >= target:
                break
            cand = note + " " + s
            n_tok = len(tokenizer.tokenize(cand)) + 2
            if n_tok <= hi:
                note, length = cand, n_tok
        if lo <= length <= hi:
            notes.append(note)
    return notes


def baseline_embed(rev: str):
    """``mmlib.embed`` as it is at git revision ``rev``, as a separate module (its own runners and caches)."""
    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "show", f"{rev}:mmlib/embed.py"], cwd=root, capture_output=True, text=True,
                         check=True).stdout
    mod = types.ModuleType("mmlib._embed_baseline")
    mod.__package__, mod.__file__ = "mmlib", f"{rev}:mmlib/embed.py"
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # noqa: S102  (the project's own code, from git)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="number of notes (default 5000)")
    ap.add_argument("--precisions", default="int8,fp32", help="embed_texts precisions to time (default int8,fp32)")
    ap.add_argument("--chunks", type=int, default=5, help="alternating timing chunks (default 5)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--encoder", default="all-MiniLM-L6-v2")
    ap.add_argument("--invariance", type=int, default=200, help="notes checked across batch compositions")
    ap.add_argument("--baseline", default="HEAD", help="git revision whose embed_texts is timed too ('' for none)")
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from mmlib.embed import embed_texts, resolve_encoder

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path = resolve_encoder(args.encoder)
    tok = AutoTokenizer.from_pretrained(path)
    notes = make_notes(args.n, tok, seed=1)
    warm = make_notes(64, tok, seed=2)
    lens = np.array([len(x) for x in tok(notes, truncation=True, max_length=256)["input_ids"]])
    precisions = [p for p in args.precisions.split(",") if p]
    print(f"encoder {path.name} ({path})")
    print(f"{len(notes)} notes, tokens per note: min {lens.min()} mean {lens.mean():.0f} median {np.median(lens):.0f} "
          f"max {lens.max()};  torch threads {torch.get_num_threads()}")
    print(f"e.g.: {notes[int(np.argsort(lens)[len(lens) // 2])][:300]}...")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        st = SentenceTransformer(str(path), device="cpu")
        st.encode(warm, batch_size=args.batch_size)
        print(f"sentence-transformers: load + warm-up {time.perf_counter() - t0:.1f} s")
        for p in precisions:  # builds (and checks) the ONNX graph: a one-time cost per encoder, kept on disk
            t0 = time.perf_counter()
            embed_texts(warm, encoder=str(path), precision=p, cache_dir=Path(tmp) / p, progress=False)
            what = "export, fusion" + (", int8 quantisation" if p == "int8" else "") + ", check"
            print(f"embed_texts {p}: first use (ONNX graphs: {what}) {time.perf_counter() - t0:.1f} s")

        base = baseline_embed(args.baseline) if args.baseline else None
        if base is not None:
            t0 = time.perf_counter()
            base.embed_texts(warm, encoder=str(path), precision=precisions[0], cache_dir=Path(tmp) / "baseline",
                             progress=False)
            print(f"baseline ({args.baseline}) embed_texts {precisions[0]}: first use {time.perf_counter() - t0:.1f} s")
        secs = {"st": 0.0, **{p: 0.0 for p in precisions}, **({"baseline": 0.0} if base is not None else {})}
        vecs = {k: [] for k in secs}
        bounds = np.linspace(0, len(notes), args.chunks + 1).astype(int)
        for c, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            chunk = notes[a:b]
            order = ["st", *precisions, *(["baseline"] if base is not None else [])]
            order = order if c % 2 == 0 else order[::-1]
            for k in order:
                t0 = time.perf_counter()
                if k == "st":
                    v = st.encode(chunk, batch_size=args.batch_size)
                elif k == "baseline":
                    v, stats = base.embed_texts(chunk, encoder=str(path), precision=precisions[0],
                                                batch_size=args.batch_size, cache_dir=Path(tmp) / k, progress=False)
                    assert stats["embedded"] == len(chunk), stats
                else:
                    v, stats = embed_texts(chunk, encoder=str(path), precision=k, batch_size=args.batch_size,
                                           cache_dir=Path(tmp) / k, progress=False)
                    assert stats["embedded"] == len(chunk), stats
                secs[k] += time.perf_counter() - t0
                vecs[k].append(np.asarray(v, dtype=np.float32))
            print(f"  chunk {c + 1}/{args.chunks} ({b - a} notes), cumulative: "
                  + ", ".join(f"{k} {secs[k]:.1f} s" for k in secs), flush=True)
        ref = np.concatenate(vecs["st"])
        st_rate = len(notes) / secs["st"]
        print()
        print(f"{'method':<44s} {'notes/s':>8s} {'ratio':>6s} {'cos min':>8s} {'cos mean':>9s}")
        print(f"{'sentence-transformers encode(batch_size=' + str(args.batch_size) + ')':<44s} {st_rate:8.1f} "
              f"{1.0:6.2f} {'-':>8s} {'-':>9s}")
        verdicts = []
        for p in precisions:
            v = np.concatenate(vecs[p])
            cos = (v * ref).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(ref, axis=1))
            rate = len(notes) / secs[p]
            ratio = rate / st_rate
            print(f"{'embed_texts precision=' + p:<44s} {rate:8.1f} {ratio:6.2f} {cos.min():8.5f} {cos.mean():9.5f}")
            verdicts.append(f"{p}: ratio {ratio:.2f} ({'meets' if ratio >= TARGET_RATIO else 'below'} the "
                            f"{TARGET_RATIO:.0f}x target), min cosine {cos.min():.4f} "
                            f"({'meets' if cos.min() >= TARGET_COSINE else 'below'} {TARGET_COSINE})")
        if base is not None:
            vb, vn = np.concatenate(vecs["baseline"]), np.concatenate(vecs[precisions[0]])
            rate_b = len(notes) / secs["baseline"]
            same = vb.tobytes() == vn.tobytes()
            print(f"{'baseline ' + args.baseline + ' embed_texts precision=' + precisions[0]:<44s} {rate_b:8.1f} "
                  f"{rate_b / st_rate:6.2f}")
            verdicts.append(f"{precisions[0]}: working tree / baseline {args.baseline}: "
                            f"{secs['baseline'] / secs[precisions[0]]:.2f}x the speed; vectors "
                            f"{'the same bytes' if same else 'DIFFERENT: max |diff| %.3g' % np.abs(vb - vn).max()}")
        t0 = time.perf_counter()
        _, stats = embed_texts(notes, encoder=str(path), precision=precisions[0], cache_dir=Path(tmp) / precisions[0],
                               progress=False)
        print(f"{'embed_texts again (all from cache)':<44s} {len(notes) / (time.perf_counter() - t0):8.0f}   "
              f"(embedded {stats['embedded']}, from cache {stats['from_cache']})")

        # the same notes in other company: alone, and shuffled among other notes at another batch size
        m = min(args.invariance, len(notes))
        others = make_notes(m, tok, seed=3)
        mix = np.random.default_rng(0).permutation(2 * m)
        print()
        print(f"a note's vector across batch compositions ({m} notes: timed run / alone / shuffled mix, batch 7)")
        print(f"{'method':<44s} {'max |diff|':>11s} {'notes that moved':>17s}")
        for k in ["st", *precisions]:
            if k == "st":
                alone = np.concatenate([st.encode([t], batch_size=1) for t in notes[:m]])
                mixed = st.encode([(notes[:m] + others)[i] for i in mix], batch_size=7)
                name = "sentence-transformers encode"
            else:
                alone = np.concatenate([embed_texts([t], encoder=str(path), precision=k, progress=False)[0]
                                        for t in notes[:m]])
                mixed = embed_texts([(notes[:m] + others)[i] for i in mix], encoder=str(path), precision=k,
                                    batch_size=7, progress=False)[0]
                name = f"embed_texts precision={k}"
            mixed = mixed[np.argsort(mix)][:m]
            timed = np.concatenate(vecs[k])[:m]
            diff = np.maximum(np.abs(timed - alone).max(1), np.abs(mixed - alone).max(1))
            print(f"{name:<44s} {diff.max():11.3g} {int((diff > 0).sum()):>8d} of {m:<6d}")
            if k != "st":
                verdicts.append(f"{k}: largest change of a note's vector across batch compositions {diff.max():.3g} "
                                f"({'meets' if diff.max() == 0 else 'misses'} the target 0: same bytes)")
        print()
        for line in verdicts:
            print(line)


if __name__ == "__main__":
    main()
