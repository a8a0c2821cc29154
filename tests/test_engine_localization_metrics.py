"""The localization metrics of the field (Choe et al., CVPR 2020) against examples computed by hand:
GT-known and top-1 localization, the boxes of every connected component, MaxBoxAccV2 with its thresholds
chosen on a selection split and never on the split it reports."""

from __future__ import annotations

import pytest
import torch

from elope.engine.localizer_check import TAU_GRID
from elope.evaluation.localization_metrics import (
    BoxAccCurve,
    LocalizationAccumulator,
    best_component_iou,
    component_boxes,
    max_box_acc_v2,
    top1_loc_hits,
)
from elope.nn.localization import heatmap_to_box

NAN = float("nan")


def _map(cells: dict[tuple[int, int], float], side: int = 4) -> torch.Tensor:
    """A (1, 1, side, side) heatmap: 0 everywhere but ``cells``."""
    m = torch.zeros(1, 1, side, side)
    for (row, col), value in cells.items():
        m[0, 0, row, col] = value
    return m


# Two components on a 4x4 map in a 40-px frame (cells of 10 px), min 0 and max 1 (normalised = as is):
#   row 0: 1.0 0.9 .   .       component A: cells (0,0), (0,1) -> box x 0..20, y 0..10
#   row 1: .   .   .   .
#   row 2: .   .   .   0.6     component B: cells (2,3), (3,2), touching only diagonally (8-connected)
#   row 3: .   .   0.6 .                    -> box x 20..40, y 20..40
TWO = _map({(0, 0): 1.0, (0, 1): 0.9, (2, 3): 0.6, (3, 2): 0.6})
BOX_A, BOX_B = [0.0, 0.0, 20.0, 10.0], [20.0, 20.0, 40.0, 40.0]


def test_top1_loc_needs_the_right_class_and_the_box():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3 + [[NAN] * 4])
    boxes = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 4.0], [0, 0, 1, 1]]
    )
    labels, predictions = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 2, 3])
    # image 0: right class, IoU 1; image 1: wrong class, IoU 1; image 2: right class, IoU 0.4; 3: no box
    hits, valid = top1_loc_hits(predictions, labels, boxes, gt)
    assert hits.tolist() == [True, False, False, False] and valid.tolist() == [True, True, True, False]


def test_every_component_gives_a_box_and_diagonal_cells_are_one_component():
    boxes, image, tau = component_boxes(TWO, [0.5, 0.8, 0.95], 40, side=None)
    found = sorted(zip(tau.tolist(), image.tolist(), boxes.tolist()))
    assert found == [
        (0, 0, BOX_A),  # τ 0.5: both components
        (0, 0, BOX_B),
        (1, 0, BOX_A),  # τ 0.8: 0.6 drops out
        (2, 0, [0.0, 0.0, 10.0, 10.0]),  # τ 0.95: the peak alone
    ]


def test_the_best_matching_component_counts_not_the_box_around_all():
    gt = torch.tensor([BOX_B])
    # τ 0.5: component B is the ground truth (IoU 1); the box around every cell (the paper's box step,
    # 0..40 x 0..40) has IoU 400 / 1600 = 0.25. τ 0.8: only A is left, disjoint from B: IoU 0.
    assert best_component_iou(TWO, gt, 40, [0.5, 0.8], side=None).tolist() == [[1.0, 0.0]]
    assert heatmap_to_box(TWO, 0.5, 40).tolist() == [[0.0, 0.0, 40.0, 40.0]]


def test_a_flat_or_broken_map_gives_the_whole_frame_as_the_box_step_does():
    maps = torch.cat([torch.full((1, 1, 4, 4), 0.3), _map({(0, 0): NAN, (1, 1): 1.0})])
    boxes, image, tau = component_boxes(maps, [0.1, 0.5], (30, 40), side=None)
    assert sorted(zip(image.tolist(), tau.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert boxes.tolist() == [[0.0, 0.0, 40.0, 30.0]] * 4  # (H, W) = (30, 40)
    assert heatmap_to_box(maps, 0.5, (30, 40)).tolist() == [[0.0, 0.0, 40.0, 30.0]] * 2


def test_maps_are_resized_to_the_common_grid_before_thresholding():
    # A 2x2 map [[1, 0], [0, 0]] resized bilinearly to 4x4 (align_corners=False) is a_i * a_j with
    # a = (1, 0.75, 0.25, 0): at τ 0.8 only the corner pixel (1 > 0.8; 0.75 is not) -> one 10-px cell of
    # a 40-px frame; on the 2x2 cells the same τ keeps the 20-px cell.
    m = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert component_boxes(m, [0.8], 40, side=4)[0].tolist() == [[0.0, 0.0, 10.0, 10.0]]
    assert component_boxes(m, [0.8], 40, side=None)[0].tolist() == [[0.0, 0.0, 20.0, 20.0]]
    # at τ 0.7 the 0.75 pixels join: rows and columns 0..1 -> 20 px
    assert component_boxes(m, [0.7], 40, side=4)[0].tolist() == [[0.0, 0.0, 20.0, 20.0]]


def test_components_agree_with_the_box_step_on_random_maps():
    """The box around all components is the paper's box (rule ``all``); the peak's component is the
    ``peak`` rule's box: one normalisation, one ``> τ``, one 8-connectivity."""
    maps = torch.rand(6, 1, 7, 7, generator=torch.Generator().manual_seed(0))
    boxes, image, tau = component_boxes(maps, TAU_GRID, 70, side=None)
    for t, threshold in enumerate(TAU_GRID):
        every = heatmap_to_box(maps, threshold, 70, rule="all")
        peak = heatmap_to_box(maps, threshold, 70, rule="peak")
        for b in range(len(maps)):
            mine = boxes[(image == b) & (tau == t)]
            union = [*mine[:, :2].amin(0).tolist(), *mine[:, 2:].amax(0).tolist()]
            assert union == every[b].tolist()
            assert peak[b].tolist() in mine.tolist()


# Thresholds chosen on one split, read on another. τ ∈ {0.5, 0.8}, one image per split, 4x4 maps in a 40 px
# frame; both maps are 1.0 at (0, 0) and 0.6 at (0, 1):  τ 0.5 -> box 0..20 x 0..10;  τ 0.8 -> 0..10 x 0..10.
PAIR = _map({(0, 0): 1.0, (0, 1): 0.6})
SELECT_GT = torch.tensor([[0.0, 0.0, 20.0, 10.0]])  # IoU 1 at τ 0.5, 0.5 at τ 0.8
TEST_GT = torch.tensor([[0.0, 0.0, 10.0, 10.0]])  # IoU 0.5 at τ 0.5, 1 at τ 0.8


def _curve(gt: torch.Tensor) -> BoxAccCurve:
    curve = BoxAccCurve(40, thresholds=(0.5, 0.8), side=None)
    curve.update(PAIR, gt)
    return curve


def test_box_accuracy_curve_by_hand():
    #                         τ 0.5  τ 0.8
    # selection, IoU ≥ 0.3:     1      1
    #            IoU ≥ 0.5:     1      1      (0.5 counts)
    #            IoU ≥ 0.7:     1      0
    assert _curve(SELECT_GT).accuracy().tolist() == [[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]]
    assert _curve(TEST_GT).accuracy().tolist() == [[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]]


def test_maxboxacc_v2_reads_the_evaluated_split_at_the_selection_splits_threshold():
    result = max_box_acc_v2(_curve(SELECT_GT), _curve(TEST_GT))
    # selection: every IoU level is best at τ 0.5 (ties at 0.3 and 0.5 go to the smaller τ); the test split
    # at τ 0.5: 1, 1, 0 -> (1 + 1 + 0) / 3. Its own best τ at IoU 0.7 (0.8, accuracy 1) is not used: the
    # field's MaxBoxAccV2 on the test split would be 1.
    assert result is not None and result["value"] == pytest.approx(2 / 3)
    assert result["per_iou"]["0.7"] == {"tau": 0.5, "selection": 1.0, "accuracy": 0.0}
    assert [v["tau"] for v in result["per_iou"].values()] == [0.5, 0.5, 0.5]
    assert result["selection_images"] == result["images"] == 1
    # the other way round, τ at IoU 0.7 follows the (now) selection split: 0.8, where the other split has 0
    swapped = max_box_acc_v2(_curve(TEST_GT), _curve(SELECT_GT))
    assert swapped is not None and swapped["per_iou"]["0.7"] == {
        "tau": 0.8,
        "selection": 1.0,
        "accuracy": 0.0,
    }


def test_the_evaluated_split_never_moves_the_threshold():
    """Whatever the evaluated split scores at the other thresholds, the chosen τ and the value stay."""
    selection, evaluated = _curve(SELECT_GT), _curve(TEST_GT)
    before = max_box_acc_v2(selection, evaluated)
    evaluated.hits[:, 1] = 0  # τ 0.8 of the evaluated split: 1, 1, 1 -> 0, 0, 0
    assert max_box_acc_v2(selection, evaluated) == before
    evaluated.hits[:, 0] = 0  # but its value at the chosen τ 0.5 is what is reported
    after = max_box_acc_v2(selection, evaluated)
    assert after is not None and after["value"] == 0.0


def test_maxboxacc_v2_needs_images_and_one_grid():
    empty = BoxAccCurve(40, thresholds=(0.5, 0.8), side=None)
    empty.update(PAIR, torch.tensor([[NAN] * 4]))  # no ground-truth box: left out
    assert empty.images == 0 and max_box_acc_v2(empty, _curve(TEST_GT)) is None
    with pytest.raises(ValueError, match="different grids"):
        max_box_acc_v2(BoxAccCurve(40), _curve(TEST_GT))


def test_accumulator_over_batches_by_hand():
    acc = LocalizationAccumulator(40)
    gt = torch.tensor([BOX_B, BOX_B])
    boxes = torch.tensor([BOX_B, BOX_A])  # image 0 hit, image 1 miss
    acc.update(torch.tensor([0, 1]), torch.tensor([1, 1]), boxes, gt, torch.cat([TWO, TWO]))
    acc.update(torch.tensor([2]), torch.tensor([2]), torch.tensor([BOX_B]), torch.tensor([BOX_B]), TWO)
    # GT-known: images 0 and 2 hit -> 2/3; top-1 loc: image 0 has the wrong class -> 1/3
    selection = BoxAccCurve(40)
    selection.update(TWO, torch.tensor([BOX_B]))
    result = acc.result(selection, "trainval")
    assert result is not None
    assert result["gt_known"] == pytest.approx(2 / 3) and result["top1_loc"] == pytest.approx(1 / 3)
    v2 = result["maxboxacc_v2"]
    assert v2["selection_split"] == "trainval" and v2["images"] == 3 and v2["selection_images"] == 1
    # every image is TWO with ground truth B: the same curve in both splits, so the evaluated split at the
    # selection's τ is its own best: component B matches at every IoU level
    assert v2["value"] == pytest.approx(1.0)
    assert LocalizationAccumulator(40).result(selection, "trainval") is None  # no boxes seen
