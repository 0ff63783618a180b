"""Vessel measurements (morphometry.py, measure.py) on synthetic shapes with known answers."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

import morphometry as M
from conftest import REPO, disc_image
from imio import write_png


# --- synthetic vessels -------------------------------------------------------------------------

def bar(length, width, angle, size=300):
    """A straight bar: pixel centres within width/2 of the axis and length/2 of the centre."""
    yy, xx = np.mgrid[:size, :size].astype(float)
    c = (size - 1) / 2
    d = np.sin(np.radians(angle)), np.cos(np.radians(angle))
    along = (yy - c) * d[0] + (xx - c) * d[1]
    across = -(yy - c) * d[1] + (xx - c) * d[0]
    return (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)


def tube(points, width, shape):
    """Pixels within width/2 of a densely sampled polyline (y, x): round ends."""
    free = np.ones(shape, bool)
    ij = np.round(points).astype(int)
    free[ij[:, 0], ij[:, 1]] = False
    return distance_transform_edt(free) <= width / 2


def arc(radius, degrees, width=5, size=400):
    t = np.radians(np.linspace(-degrees / 2, degrees / 2, 20000))
    pts = np.c_[size / 2 + radius * np.sin(t), size / 2 - radius + radius * np.cos(t)]
    return tube(pts, width, (size, size))


def sine(amplitude, wavelength, periods, width=5):
    """A sine-shaped vessel and its analytic arc length, chord and mean squared curvature."""
    x = np.linspace(0, wavelength * periods, 40000)
    k = 2 * np.pi / wavelength
    dy, ddy = amplitude * k * np.cos(k * x), -amplitude * k * k * np.sin(k * x)
    ds = np.sqrt(1 + dy ** 2)
    arc_len = np.trapezoid(ds, x)
    curvature = np.trapezoid((ddy / ds ** 3) ** 2 * ds, x) / arc_len
    pad = 20 + amplitude + width
    shape = (int(2 * pad), int(x[-1] + 2 * pad))
    mask = tube(np.c_[amplitude * np.sin(k * x) + shape[0] / 2, x + pad], width, shape)
    return mask, arc_len, x[-1], curvature


def y_junction(angle, width=5, size=300, arm=100):
    """A stem from the bottom to the centre and two daughters at +-angle/2 from straight on."""
    c = np.array([size / 2, size / 2])
    parts = [np.linspace(c + [arm, 0], c, 4000)]
    for s in (-1, 1):
        a = np.radians(angle / 2) * s
        parts.append(np.linspace(c, c + arm * np.array([-np.cos(a), np.sin(a)]), 4000))
    return tube(np.vstack(parts), width, (size, size))


def carpet(level):
    m = np.ones((1, 1), bool)
    for _ in range(level):
        z = np.zeros_like(m)
        m = np.block([[m, m, m], [m, z, m], [m, m, m]])
    return m


def tree(size=400):
    """A small vessel tree: a wavy trunk with two straight branches and a Y."""
    x = np.linspace(20, 380, 6000)
    trunk = np.c_[200 + 15 * np.sin(x / 40), x]
    b1 = np.linspace([200 + 15 * np.sin(100 / 40), 100], [60, 160], 3000)
    b2 = np.linspace([200 + 15 * np.sin(260 / 40), 260], [350, 330], 3000)
    b3 = np.linspace([60, 160], [30, 250], 3000)
    m = tube(trunk, 7, (size, size)) | tube(b1, 5, (size, size)) | tube(b2, 5, (size, size))
    return m | tube(b3, 3, (size, size)) | tube(np.linspace([60, 160], [20, 110], 3000), 3, (size, size))


def measure(mask, **kw):
    row, segs, _ = M.measure_mask(mask, **kw)
    return row, segs


# --- length, distance factor, curvature, calibre --------------------------------------------------

@pytest.mark.parametrize("angle", [0, 10, 22.5, 30, 45, 60, 80, 135])
@pytest.mark.parametrize("width", [3, 5, 8])
def test_straight_bar_any_angle_true_length_factor_one_no_curvature(angle, width):
    mask = bar(200, width, angle)
    row, segs = measure(mask)
    assert row["n_segments"] == 1 and row["n_end_points"] == 2 and row["n_branch_points"] == 0
    assert row["centreline_length_px"] == pytest.approx(200, rel=0.015)  # not the 8 % of the pixel staircase
    assert 1 - 1e-9 <= row["distance_factor"] < 1.005
    assert row["curvature_tortuosity_per_px2"] < 1e-4  # a circle of radius 100 px would give 1e-4
    assert row["tortuosity_density_per_px"] < 1e-4
    digital_width = mask.sum() / 200
    assert abs(segs[0].calibre - digital_width) <= 0.5
    assert row["mean_calibre_px"] == pytest.approx(digital_width, abs=0.1)


@pytest.mark.parametrize("width", [2, 3, 4, 6, 9, 12])
@pytest.mark.parametrize("angle", [0, 30])
def test_calibre_of_bars_of_known_width_within_half_a_pixel(width, angle):
    mask = bar(160, width, angle)
    _, segs = measure(mask)
    assert abs(segs[0].calibre - mask.sum() / 160) <= 0.5
    if angle == 0:
        assert abs(segs[0].calibre - (mask.sum() / 160)) < 0.05  # axis-aligned: exact


@pytest.mark.parametrize("radius,degrees", [(40, 180), (60, 120), (100, 60), (100, 120), (80, 180)])
def test_circular_arc_distance_factor_and_curvature(radius, degrees):
    row, segs = measure(arc(radius, degrees, size=500))
    theta = np.radians(degrees)
    assert row["n_segments"] == 1
    assert row["centreline_length_px"] == pytest.approx(radius * theta + 5, rel=0.02)  # + the round ends
    assert row["distance_factor"] == pytest.approx(theta / (2 * np.sin(theta / 2)), rel=0.03)
    assert row["curvature_tortuosity_per_px2"] == pytest.approx(1 / radius ** 2, rel=0.15)
    assert row["tortuosity_density_per_px"] < 2e-4  # one turn: no inflection, TD = 0 (Grisan 2008)


@pytest.mark.parametrize("amplitude,wavelength,periods", [(10, 80, 3), (5, 60, 4), (20, 120, 2)])
def test_sine_wave_arc_chord_curvature_and_tortuosity_density(amplitude, wavelength, periods):
    mask, arc_len, chord, curvature = sine(amplitude, wavelength, periods)
    row, _ = measure(mask)
    assert row["centreline_length_px"] == pytest.approx(arc_len + 5, rel=0.02)
    assert row["distance_factor"] == pytest.approx((arc_len + 5) / (chord + 5), rel=0.02)
    assert row["curvature_tortuosity_per_px2"] == pytest.approx(curvature, rel=0.2)
    assert row["tortuosity_density_per_px"] > 5e-4  # 2 * periods turns: well above a straight or single arc


def test_path_is_walked_along_the_vessel_not_in_raster_order():
    """An S-shaped vessel: raster order would jump between its arms (PVBM's old tortuosity bug)."""
    mask, arc_len, chord, _ = sine(30, 100, 1, width=3)
    _, segs = measure(mask)
    steps = np.hypot(*np.diff(segs[0].points, axis=0).T)
    assert steps[1:-1].max() < 2.0  # consecutive points are neighbours along the vessel (ends: the tips)
    assert segs[0].length == pytest.approx(arc_len + 3, rel=0.02)


# --- fractal dimension, branching ----------------------------------------------------------------

def test_box_counting_square_line_and_sierpinski_carpet():
    fd, sizes = M.box_counting_dimension(np.ones((256, 256), bool))
    assert fd == pytest.approx(2.0, abs=0.01) and sizes == [2, 4, 8, 16, 32, 64]
    line = np.zeros((256, 256), bool)
    line[100] = True
    assert M.box_counting_dimension(line, region=np.ones_like(line))[0] == pytest.approx(1.0, abs=0.01)
    assert M.box_counting_dimension(np.eye(300, dtype=bool))[0] == pytest.approx(1.0, abs=0.05)
    inset = np.zeros((300, 300), bool)
    inset[20:263, 30:273] = carpet(5)
    assert M.box_counting_dimension(inset)[0] == pytest.approx(np.log(8) / np.log(3), abs=0.05)
    assert M.box_counting_dimension(np.zeros((64, 64), bool))[0] is None


@pytest.mark.parametrize("angle", [40, 60, 90, 120])
def test_y_junction_one_branch_point_three_ends_and_its_angle(angle):
    row, _ = measure(y_junction(angle))
    assert (row["n_branch_points"], row["n_end_points"], row["n_segments"]) == (1, 3, 3)
    assert row["n_branching_angles"] == 1
    assert row["branching_angle_deg"] == pytest.approx(angle, abs=3)


@pytest.mark.parametrize("transform", [np.asarray, np.rot90, np.transpose, lambda m: np.rot90(m, 3)])
def test_a_ring_on_a_stem_is_a_closed_loop_not_scored_for_tortuosity(transform):
    """A segment that leaves a branch point and comes back to it (a small ring on a vessel, as a mask
    of one vessel kind often has where two vessels touch) has no chord: arc / chord is not defined for
    it, so it is not scored (the segment is kept, with its length). Scored, its arc over a chord of a
    fraction of a pixel made a photograph's length-weighted distance factor 4 instead of 1.05."""
    shape = (120, 220)
    t = np.linspace(0, 2 * np.pi, 4000)
    ring = np.c_[28 + 14 * np.sin(t), 110 + 14 * np.cos(t)]
    mask = tube(np.linspace([90, 10], [90, 210], 4000), 5, shape) | tube(np.linspace([90, 110], [42, 110], 2000), 5, shape)
    row, segs = measure(transform(mask | tube(ring, 5, shape)))
    closed = [s for s in segs if s.length > 60 and s.chord < 2]
    assert len(closed) == 1 and not closed[0].scored and closed[0].distance_factor is None
    assert row["distance_factor"] == pytest.approx(1.0, abs=0.03)  # the bar's two halves and the stem
    assert row["centreline_length_px"] > 200 + 2 * np.pi * 14 * 0.8  # the ring's length still counts


# --- invariances, units --------------------------------------------------------------------------

CONTINUOUS = ["vessel_area_density", "centreline_length_px", "mean_calibre_px", "calibre_weighted_px", "fd_mask",
              "fd_centreline", "distance_factor", "branching_angle_deg"]


@pytest.mark.parametrize("transform", [np.rot90, np.fliplr, np.flipud, np.transpose])
def test_rotation_and_flips_leave_every_measure_unchanged(transform):
    mask = tree()
    a, _ = measure(mask)
    b, _ = measure(np.ascontiguousarray(transform(mask)))
    for k in ("n_end_points", "n_branch_points", "n_segments", "n_segments_scored"):
        assert a[k] == b[k], k
    for k in CONTINUOUS:
        tolerance = {"fd_mask": 0.02, "fd_centreline": 0.02, "branching_angle_deg": 2.0}.get(k, 0)
        assert b[k] == pytest.approx(a[k], rel=0.01, abs=tolerance), k
    # the tree's vessels are gentle (a radius of 100 px or more): the same within 2e-5 / px^2 (a 220 px radius)
    assert b["curvature_tortuosity_per_px2"] == pytest.approx(a["curvature_tortuosity_per_px2"], abs=2e-5)


def test_twice_the_resolution_doubles_pixels_and_keeps_micrometres():
    mask = tree()
    big = np.kron(mask, np.ones((2, 2), bool))
    a, _ = measure(mask, fov_degrees=45)
    b, _ = measure(big, fov_degrees=45)
    assert b["um_per_px"] == pytest.approx(a["um_per_px"] / 2, rel=1e-6)
    assert b["centreline_length_px"] == pytest.approx(2 * a["centreline_length_px"], rel=0.03)
    assert b["mean_calibre_px"] == pytest.approx(2 * a["mean_calibre_px"], rel=0.03)
    assert b["calibre_weighted_px"] == pytest.approx(2 * a["calibre_weighted_px"], rel=0.05)
    assert b["centreline_length_mm"] == pytest.approx(a["centreline_length_mm"], rel=0.03)
    assert b["mean_calibre_um"] == pytest.approx(a["mean_calibre_um"], rel=0.03)
    assert b["length_density_mm_per_mm2"] == pytest.approx(a["length_density_mm_per_mm2"], rel=0.03)
    assert b["distance_factor"] == pytest.approx(a["distance_factor"], rel=0.01)
    assert (b["n_branch_points"], b["n_end_points"]) == (a["n_branch_points"], a["n_end_points"])


def test_units_from_the_pixel_size_or_the_field_of_view():
    mask = bar(200, 5, 30)
    fov = np.zeros_like(mask)
    fov[:, 20:280] = True  # 260 px wide
    row, _ = measure(mask, um_per_px=10.0)
    assert row["centreline_length_mm"] == pytest.approx(row["centreline_length_px"] * 0.01)
    assert row["mean_calibre_um"] == pytest.approx(row["mean_calibre_px"] * 10)
    assert row["curvature_tortuosity_per_mm2"] == pytest.approx(row["curvature_tortuosity_per_px2"] / 1e-4)
    row, _ = measure(mask, fov=fov, fov_degrees=45)
    assert row["fov_diameter_px"] == 260 and row["um_per_px"] == pytest.approx(45 * 288 / 260)
    assert row["vessel_area_density"] == pytest.approx((mask & fov).sum() / fov.sum())


def test_a_fov_off_centre_measures_as_its_cut_out_with_points_in_the_whole_image():
    small = tree()
    big = np.zeros((600, 700), bool)
    big[150:550, 230:630] = small
    fov = np.zeros_like(big)
    fov[150:550, 230:630] = True
    noise = np.zeros_like(big)
    noise[10:20, 10:200] = True  # outside the FOV: not measured
    a, segs_a = measure(small)
    b, segs_b = measure(big | noise, fov=fov)
    for k in M.COLUMNS[6:]:
        assert b[k] == (a[k] if a[k] is None else pytest.approx(a[k], rel=1e-9)), k
    assert (b["width_px"], b["height_px"]) == (700, 600)
    for sa, sb in zip(segs_a, segs_b):
        assert np.allclose(sb.points, sa.points + [150, 230])
    _, _, skel = M.measure_mask(big | noise, fov)
    assert skel.shape == big.shape and skel[150:550, 230:630].sum() == skel.sum() > 0


# --- odd inputs: a row with a reason, never a crash or a silent zero -------------------------------

def test_empty_mask_states_why_and_leaves_the_rest_empty():
    row, segs = measure(np.zeros((100, 120), bool))
    assert row["status"] == "empty" and "no vessel pixels" in row["note"]
    assert row["vessel_area_density"] == 0 and row["centreline_length_px"] == 0
    for k in ("mean_calibre_px", "fd_mask", "distance_factor", "branching_angle_deg"):
        assert row[k] is None, k
    assert segs == []


def test_only_short_segments_no_tortuosity_with_the_reason():
    mask = np.zeros((400, 400), bool)  # segments are scored from 2 % of 400 = 8 px
    mask[50:53, 50:56] = True
    mask[120:123, 100:105] = True
    row, _ = measure(mask)
    assert row["status"] == "ok" and row["n_segments_scored"] == 0 and row["distance_factor"] is None
    assert "tortuosity not scored" in row["note"] and row["centreline_length_px"] > 0


def test_an_empty_fov_falls_back_to_the_whole_image_and_says_so():
    row, _ = measure(bar(100, 3, 0), fov=np.zeros((300, 300), bool))
    assert row["fov_source"].startswith("whole image") and "no FOV found" in row["note"]


def test_noisy_mask_never_crashes():
    rng = np.random.default_rng(0)
    for p in (0.05, 0.3, 0.6, 0.95):
        row, _ = measure(rng.random((120, 150)) < p)
        assert row["status"] in ("ok", "empty") and row["centreline_length_px"] >= 0


# --- measure.py and predict.py --measure ---------------------------------------------------------

def run(*args, cwd, env=None):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **(env or {})))


def read_table(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_measure_script_folder_of_masks_bad_files_and_skip_existing(tmp_path):
    src = tmp_path / "masks"
    write_png(src / "tree.png", tree())
    write_png(src / "bar.png", bar(200, 5, 30))
    write_png(src / "empty.png", np.zeros((80, 90), bool))
    (src / "junk.png").write_bytes(b"not an image")
    out = tmp_path / "out" / "m.csv"
    r = run(REPO / "measure.py", "--input", src, "--output", out, "--segments", "--overlay", "--um-per-px", "10",
            "--workers", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "measured 3 of 4 image(s)" in r.stdout and "junk" in r.stderr
    rows = {row["image"]: row for row in read_table(out)}
    assert list(read_table(out)[0]) == M.COLUMNS
    assert set(rows) == {"tree", "bar", "empty", "junk"}
    assert rows["junk"]["status"] == "failed" and "not an image file" in rows["junk"]["note"]
    assert "BytesIO" not in rows["junk"]["note"] and rows["junk"]["centreline_length_px"] == ""
    assert rows["empty"]["status"] == "empty" and rows["empty"]["mean_calibre_px"] == ""
    direct, segs = measure(tree(), um_per_px=10.0)
    assert float(rows["tree"]["centreline_length_px"]) == pytest.approx(direct["centreline_length_px"], abs=1e-4)
    assert rows["tree"]["fov_source"].startswith("whole image")
    doc = json.loads((out.parent / "tree_measurements.json").read_text())
    assert doc["measurements"]["n_segments"] == direct["n_segments"]
    seg_rows = read_table(out.parent / "tree_segments.csv")
    assert len(seg_rows) == len(segs) and float(seg_rows[0]["length_px"]) > 0
    assert (out.parent / "tree_calibre.png").is_file() and (out.parent / "tree_tortuosity.png").is_file()
    # an interrupted run continues: only what is missing is measured again, the table is whole
    (out.parent / "bar_measurements.json").unlink()
    before = (out.parent / "tree_measurements.json").stat().st_mtime_ns
    r = run(REPO / "measure.py", "--input", src, "--output", out, "--skip-existing", "--workers", "1", cwd=tmp_path)
    assert r.returncode == 0 and "3 reused (--skip-existing)" in r.stdout, r.stdout + r.stderr
    assert (out.parent / "tree_measurements.json").stat().st_mtime_ns == before
    assert {row["image"] for row in read_table(out)} == {"tree", "bar", "empty", "junk"}


def test_measure_default_mask_with_its_photograph_and_size_mismatch(tmp_path):
    img, label, fov = disc_image(200, 220, 90)
    write_png(tmp_path / "result" / "res.png", label)
    write_png(tmp_path / "predict" / "img.png", img)
    r = run(REPO / "measure.py", "--fov-degrees", "45", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    row = read_table(tmp_path / "result" / "measurements.csv")[0]
    assert row["image"] == "res" and row["fov_source"] == "estimated from the photograph"
    assert float(row["fov_diameter_px"]) == pytest.approx(180, abs=3) and float(row["um_per_px"]) > 0
    # a photograph of another size: one clear line, a row with the reason
    write_png(tmp_path / "other.png", img[:150])
    r = run(REPO / "measure.py", "--input", tmp_path / "result" / "res.png", "--photos", tmp_path / "other.png",
            cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "but its photograph" in r.stderr
    assert read_table(tmp_path / "result" / "measurements.csv")[0]["status"] == "failed"


def test_measure_photographs_and_predict_measure_agree_without_torch(tmp_path):
    src = tmp_path / "photos"
    for i in range(2):
        img, _, _ = disc_image(160 + 10 * i, 180, 70, seed=i)
        write_png(src / f"p{i}.png", img)
    check = ("import runpy, sys\nscript = sys.argv[1]\nsys.argv = sys.argv[1:]\ncode = 0\ntry:\n"
             "    runpy.run_path(script, run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
             "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(code)")
    env = {"PYTHONPATH": str(REPO)}
    model = ("--weights", REPO / "UNet.onnx")
    r1 = run("-c", check, REPO / "measure.py", "--input", src, "--output", tmp_path / "a" / "m.csv", "--workers", "1",
             *model, cwd=tmp_path, env=env)
    r2 = run("-c", check, REPO / "predict.py", "--input", src, "--output", tmp_path / "b", "--measure", *model,
             cwd=tmp_path, env=env)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    a, b = read_table(tmp_path / "a" / "m.csv"), read_table(tmp_path / "b" / "measurements.csv")
    assert [r["image"] for r in a] == ["p0", "p1"] and a == b
    assert all(r["status"] == "ok" and float(r["centreline_length_px"]) > 0 for r in a)


# --- zones around the optic disc ---------------------------------------------------------------------

def disc_row(x, y, r):
    return {"disc_found": True, "disc_x_px": x, "disc_y_px": y, "disc_radius_px": r, "disc_confidence": 0.9,
            "laterality": "left (OS)", "field": "macula-centred", "disc_note": ""}


def test_zones_b_and_c_are_the_rings_2_to_3_and_2_to_5_disc_radii_measured_as_any_fov():
    mask = tree()
    yy, xx = np.mgrid[:400, :400]
    disc = disc_row(160.0, 200.0, 30.0)
    row, _, _ = M.measure_with_zones(mask, None, disc=disc, fov_degrees=45)
    d = np.hypot(yy - 200, xx - 160) / 30
    for name, ring in (("zoneB", (d >= 2) & (d <= 3)), ("zoneC", (d >= 2) & (d <= 5))):
        expect, _, _ = M.measure_mask(mask, ring, um_per_px=row["um_per_px"], min_segment_px=row["min_segment_px"],
                                      fov_diameter_px=400)
        for m in ("vessel_area_density", "centreline_length_px", "calibre_weighted_um", "n_branch_points"):
            assert row[f"{name}_{m}"] == expect[m], (name, m)
    assert row["zoneB_centreline_length_px"] < row["zoneC_centreline_length_px"] < row["centreline_length_px"]
    assert row["disc_x_px"] == 160.0 and row["laterality"] == "left (OS)" and "not measured" not in row["zone_note"]


def test_zones_outside_the_fov_without_a_disc_or_a_photograph_are_empty_with_the_reason():
    mask = tree()
    fov = np.zeros_like(mask)
    fov[:, :300] = True
    row, _, _ = M.measure_with_zones(mask, fov, disc=disc_row(395.0, 200.0, 30.0))  # the disc outside the FOV
    assert row["zoneB_centreline_length_px"] is None and row["zoneC_fd_mask"] is None
    assert "zoneB not measured: only" in row["zone_note"] and "% of it lies inside the FOV" in row["zone_note"]
    assert row["centreline_length_px"] > 0  # the whole FOV is measured all the same
    row, _, _ = M.measure_with_zones(mask, None)
    assert row["disc_found"] is False and "no photograph" in row["zone_note"] and row["zoneB_fd_mask"] is None
    lost = {"disc_found": False, "laterality": "unknown", "field": "unknown", "disc_note": "no clear disc"}
    row, _, _ = M.measure_with_zones(mask, None, disc=lost)
    assert "zones not measured: no disc (no clear disc)" in row["zone_note"] and row["fd_mask"] is not None


def _dots():
    m = np.zeros((7, 40), bool)
    m[3, ::3] = True  # dots two pixels apart: not 8-connected
    return m


@pytest.mark.parametrize("mask", [np.array([[False, True]]), np.pad(np.ones((1, 1), bool), 3), _dots()])
def test_isolated_dots_are_measured_as_area_without_a_centreline(mask):
    row, segments, skel = M.measure_mask(mask)
    assert row["status"] == "empty" and "isolated dots" in row["note"] and not skel.any() and segments == []
    assert row["vessel_area_density"] == pytest.approx(mask.mean()) and row["centreline_length_px"] == 0


def test_measure_segments_photographs_with_predicts_postprocessing_options(monkeypatch):
    import measure

    monkeypatch.setattr(measure, "_SEGMENTER", None)
    args = vars(measure.get_args(["--input", "x", "--bridge", "--min-fragment", "20"]))
    seg = measure._segmenter(dict(args, weights=str(REPO / "UNet.onnx")))
    assert seg.bridge is True and seg.min_fragment == 20
    monkeypatch.setattr(measure, "_SEGMENTER", None)
    seg = measure._segmenter(dict(vars(measure.get_args(["--input", "x"])), weights=str(REPO / "UNet.onnx")))
    assert seg.bridge is False and seg.min_fragment == 0
