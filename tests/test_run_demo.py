"""The demo's console (the training itself: test_det_e2e.py) and its labelled predictions picture."""
import io

import numpy as np
import pytest

from focalnet_mm.visualization import stack_labelled_columns

from conftest import load_tool


def test_demo_console_keeps_progress_and_leaves_setup_dumps_to_the_log_file():
    console_out = io.StringIO()
    console = load_tool('tools/run_demo.py', 'run_demo').ProgressConsole(console_out)
    prefix = '12/07 04:55:07 - mmengine - INFO - '
    console.write(prefix + '\n' + '-' * 60 + '\nSystem environment:\n    GPU number: 1\n')
    console.write(prefix + 'Config:\nmodel = dict(type="MaskRCNN")\n')
    console.write(prefix + 'paramwise_options -- backbone.norm0.weight:lr=0.0001\n')
    print('loading annotations into memory...', file=console)
    print('Done (t=0.00s)', file=console)
    print(' Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.002',
          file=console)
    console.write(prefix + 'Epoch(train) [1][10/32]  loss: 3.1\n')
    console.write('12/07 04:55:09 - mmengine - WARNING - a warning\n')
    print('the summary', file=console)
    console.flush()
    assert console_out.getvalue() == (prefix + 'Epoch(train) [1][10/32]  loss: 3.1\n'
                                      '12/07 04:55:09 - mmengine - WARNING - a warning\n'
                                      'the summary\n')


def test_predictions_picture_names_its_columns_and_aligns_them():
    rows = [np.full((40, 120, 3), 100, np.uint8), np.full((30, 100, 3), 50, np.uint8)]
    picture = stack_labelled_columns(rows, ('ground truth', 'prediction'), gap=4)
    heading = picture.shape[0] - (40 + 4 + 30)
    assert heading > 8 and picture.shape[1] == 60 + 4 + 60
    assert (picture[:heading] < 128).any()  # the titles are drawn
    second_row = picture[heading + 44:]
    # each half of the narrower row starts at its column (50 px of image, then white padding)
    assert (second_row[:, :50] == 50).all() and (second_row[:, 50:60] == 255).all()
    assert (second_row[:, 64:114] == 50).all()
    with pytest.raises(ValueError, match='do not split into 3 equal panels'):
        stack_labelled_columns(rows, ('a', 'b', 'c'))
