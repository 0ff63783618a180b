"""From map to mask (postprocess.py): the threshold; on request, gaps bridged and specks removed."""
import numpy as np

from postprocess import MIN_FRAGMENT, REFERENCE_FOV, bridges, fragment_size, vessel_mask


def speckled(size=200):
    """A map with a long vessel (0.9), pieces of 20 and 21 px (0.8) and a faint 0.3 line."""
    p = np.zeros((size, size), np.float32)
    p[100:103, 10:190] = 0.9          # a vessel, 540 px
    p[20, 10:30] = 0.8                # 20 px: removed at DRIVE's scale
    p[40, 10:31] = 0.8                # 21 px: kept
    for i in range(25):               # a diagonal line: 8-connected, one 25 px piece, kept
        p[150 + i, 20 + i] = 0.8
    p[180, 10:100] = 0.3              # below the threshold
    return p


def test_by_default_the_mask_is_the_threshold_alone():
    p = speckled()
    assert np.array_equal(vessel_mask(p, 0.5), p >= 0.5)
    assert not vessel_mask(p, 0.95).any()  # nothing above it: no crash


def test_pieces_up_to_min_fragment_are_removed_and_8_connected_lines_kept():
    p = speckled()
    m = vessel_mask(p, 0.5, min_fragment=MIN_FRAGMENT)
    assert MIN_FRAGMENT == 20
    assert not m[20].any() and m[40, 10:31].all() and m[100:103, 10:190].all()
    assert m[150:175, 20:45].sum() == 25 and not m[180].any()


def test_the_speck_size_grows_with_the_fov_area():
    assert fragment_size(REFERENCE_FOV) == 20 and fragment_size(2 * REFERENCE_FOV) == 80
    assert fragment_size(REFERENCE_FOV / 10) == 1 and fragment_size(1000, 0) == 0
    p = np.zeros((100, 100), np.float32)
    p[10, 10:90] = 0.9  # 80 px
    p[50, 10:91] = 0.9  # 81 px
    m = vessel_mask(p, 0.5, fov_diameter_px=2 * REFERENCE_FOV, min_fragment=20)
    assert not m[10].any() and m[50].sum() == 81


def gapped():
    """Two vessel pieces joined by a faint (0.2) gap; a faint spur off one; a faint isolated line."""
    p = np.zeros((60, 120), np.float32)
    p[28:33, 5:50] = 0.9
    p[28:33, 60:115] = 0.9
    p[29:32, 50:60] = 0.2     # the gap: faint, but vessel-like
    p[33:55, 90:92] = 0.2     # a faint spur down from the right piece: touches one piece only
    p[5:8, 10:100] = 0.2      # a faint line touching nothing
    p[40:43, 10:40] = 0.05    # below the bridging level
    return p


def test_a_gap_is_bridged_by_a_thin_line_and_nothing_else_is_added():
    p = gapped()
    plain = p >= 0.5
    b = bridges(p, plain)
    ys, xs = np.nonzero(b)
    assert b.sum() >= 10 and xs.min() >= 49 and xs.max() <= 60 and set(ys) == {30}  # one line across the gap
    m = vessel_mask(p, 0.5, bridge=True)
    assert np.array_equal(m, plain | b)
    from scipy import ndimage as ndi

    assert ndi.label(plain, np.ones((3, 3)))[1] == 2 and ndi.label(m, np.ones((3, 3)))[1] == 1
    assert not m[33:55, 90:92].any() and not m[5:8].any() and not m[40:43].any()
    assert not bridges(p, plain, low=0.3).any()  # the gap is fainter than the bridging level
    assert not bridges(np.zeros_like(p), np.zeros(p.shape, bool)).any()


def test_the_segmenter_and_predict_apply_the_options(tmp_path):
    from inference import Segmenter
    from conftest import REPO
    from imio import read_image, read_mask
    from preprocess import estimate_fov, fov_diameter
    import predict

    image = read_image(REPO / "predict" / "img.png")
    fov = estimate_fov(image)
    prob, plain = Segmenter.from_file(REPO / "UNet.onnx").segment(image)
    assert np.array_equal(plain, prob >= Segmenter.from_file(REPO / "UNet.onnx").threshold)
    seg = Segmenter.from_file(REPO / "UNet.onnx", bridge=True, min_fragment=20)
    _, tidy = seg.segment(image)
    assert np.array_equal(tidy, vessel_mask(prob, seg.threshold, fov_diameter(fov), True, 20))
    assert (plain & ~tidy).sum() > 20 and (tidy & ~plain).sum() > 50  # specks removed, bridges added
    predict.main(["--input", str(REPO / "predict" / "img.png"), "--output", str(tmp_path / "a")])
    predict.main(["--input", str(REPO / "predict" / "img.png"), "--output", str(tmp_path / "b"), "--bridge",
                  "--min-fragment", "20"])
    assert np.array_equal(read_mask(tmp_path / "a" / "img.png"), plain)
    assert np.array_equal(read_mask(tmp_path / "b" / "img.png"), tidy)


def test_thin_vessels_come_in_as_centrelines_where_they_continue_the_mask():
    from postprocess import THIN_MIN_LENGTH, thin_vessels

    p = gapped()
    plain = p >= 0.5
    m = vessel_mask(p, 0.5, thin=0.1)
    added = m & ~plain
    assert np.array_equal(m, plain | thin_vessels(p, plain, 0.1))
    assert added[29:32, 50:60].sum() >= 9                      # the gap: a bridge
    assert added[33:55, 88:94].sum() >= 15                     # the spur: 22 px touching one piece
    assert added[33:55].sum(axis=1).max() == 1                  # as a 1 px line
    assert not m[5:8].any() and not m[40:43, 5:45].any()      # touching nothing; below the level
    assert (m & plain).sum() == plain.sum() and added.sum() < 45  # the vessels are not widened
    assert not (vessel_mask(p, 0.5, thin=0.3) & ~plain).any()  # the faint pieces are below 0.3
    # an attached piece shorter than THIN_MIN_LENGTH is a spur of the thinning: left out
    q = p.copy()
    q[33:55, 90:92] = 0
    q[33:33 + THIN_MIN_LENGTH - 3, 30:32] = 0.2
    assert not (vessel_mask(q, 0.5, thin=0.1) & ~plain)[33:, 25:37].any()
    # at three times DRIVE's FOV the length needed triples (3 x THIN_MIN_LENGTH > 22 px): the spur is then too short
    assert not (vessel_mask(p, 0.5, fov_diameter_px=3 * REFERENCE_FOV, thin=0.1) & ~plain)[33:55].any()


def test_predict_keeps_thin_vessels_on_request(tmp_path):
    from inference import Segmenter
    from conftest import REPO
    from imio import read_image, read_mask
    import predict

    image = read_image(REPO / "predict" / "img.png")
    _, plain = Segmenter.from_file(REPO / "UNet.onnx").segment(image)
    _, thin = Segmenter.from_file(REPO / "UNet.onnx", thin=0.05).segment(image)
    assert (thin & ~plain).sum() > 100 and not (plain & ~thin).any()  # added, nothing taken away
    predict.main(["--input", str(REPO / "predict" / "img.png"), "--output", str(tmp_path), "--thin-vessels", "0.05"])
    assert np.array_equal(read_mask(tmp_path / "img.png"), thin)
