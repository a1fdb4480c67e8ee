"""What is wrong with a data set, found before training (``tools/check_dataset.py``).

A config's data set is built the way the Runner builds it (paths joined with ``data_root``, the
classes of ``metainfo``), then every file and annotation it lists is checked: COCO JSON for
detection (the raw JSON, because mmdet drops bad boxes, polygons and unknown categories without a
word), image + label-map pairs for segmentation, image + label lists for classification. Images
are checked by their header (PIL's lazy open) and their end marker (a JPEG or PNG cut short has
none), or fully decoded with ``decode=True``; label maps are always decoded (their values are
what is checked). Each problem kind says whether it makes training crash (a file that cannot be
read, label values beyond the classes, classes missing from the JSON or listed in another order
than its categories, which shifts the names of the labels) or only costs data (mmdet's silent
drops). :func:`check_class_order` is the part that ``tools/train.py`` runs before every training.
"""
import json
import math
import os
import os.path as osp
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: kind -> (what the table says, training crashes or learns wrong labels, how to fix it)
KINDS = {
    'missing': ('image file missing', True,
                'restore the file, or remove its entry (and its annotations)'),
    'undecodable': ('image cannot be read', True,
                    're-encode it (e.g. PIL open + save), or remove its entry'),
    'size_mismatch': ('image size differs from the JSON width/height', False,
                      'set width/height in the JSON to the file\'s size'),
    'duplicate_image_id': ('duplicate image id', False,
                           'give every image a unique id (COCO keeps only the last one)'),
    'duplicate_ann_id': ('duplicate annotation id', False,
                         'give every annotation a unique id (COCO keeps only the last one)'),
    'unknown_image_id': ('annotation of an image id not in images', False,
                         'fix its image_id or remove it'),
    'bad_box': ('invalid box (w or h <= 0, NaN, outside the image)', False,
                'fix the bbox [x, y, w, h] or remove it (mmdet drops it without a word)'),
    'bad_polygon': ('invalid polygon (< 3 points, odd coordinates)', False,
                    'fix the polygon or remove it (mmdet turns its object into an ignored one)'),
    'bad_rle': ('invalid RLE (does not decode, or its size is not the image\'s)', True,
                'export the mask again'),
    'unknown_category': ('category id not among the JSON categories', False,
                         'map it to a listed category id or remove it (mmdet drops it)'),
    'class_not_in_json': ('class of the config not among the JSON categories', True,
                          'spell classes exactly as the JSON categories\' names (a missing one '
                          'shifts the labels of all classes after it)'),
    'class_order': ('classes in another order than the JSON categories (label names shifted)', True,
                    'paste the classes line shown (mmdet numbers labels in the JSON\'s category '
                    'order, whatever the order of classes)'),
    'unlisted_classes': ('classes of the data set type left out of classes', False,
                         'add them to classes if they should be learned (mmseg maps the listed '
                         'ones by name and ignores the pixels of the others: 255)'),
    'empty_class': ('class with no instance', False,
                    'annotate some, or remove the class from classes'),
    'no_annotations': ('image without annotations (of the classes)', False,
                       'annotate it (training skips it) or remove it'),
    'missing_label': ('label map missing', True, 'add NAME<seg_map_suffix> next to the others'),
    'undecodable_label': ('label map cannot be read', True, 'write it again as a PNG'),
    'label_channels': ('label map is not single-channel', True,
                       'store class indices, not colours, in a single-channel (L or P) PNG'),
    'label_size': ('label map size differs from its image', True,
                   'resize it with nearest neighbour to the image size (or fix the pairing)'),
    'label_values': ('label values outside the classes', True,
                     'map them to class indices or 255 (ignored); check reduce_zero_label'),
    'bad_label': ('class label outside the classes', True, 'fix the label index in the list'),
}
#: end markers of files cut short: (suffixes, marker)
END_MARKERS = (((b'\xff\xd8', ), b'\xff\xd9'), ((b'\x89PNG', ), b'IEND'))
#: search this far back for the end marker (some writers append data after it)
END_SEARCH_BYTES = 4096


@dataclass
class Report:
    """Problems and statistics of one data set."""
    name: str
    task: str
    samples: int = 0
    problems: Dict[str, List[str]] = field(default_factory=lambda: defaultdict(list))
    image_sizes: List[Tuple[int, int]] = field(default_factory=list)  # (w, h)
    object_sizes: List[float] = field(default_factory=list)  # sqrt(box area), pixels
    per_class: Dict[str, int] = field(default_factory=dict)  # instances / images / samples

    def add(self, kind: str, what: str) -> None:
        self.problems[kind].append(what)

    def add_image(self, path: str, size, problem: Optional[str]) -> bool:
        """Record what :func:`inspect_image` found; True when the image is readable."""
        if problem is None:
            self.image_sizes.append(size)
        elif problem == 'missing':
            self.add('missing', path)
        else:
            self.add('undecodable', f'{path}: {problem}')
        return problem is None

    def set_per_class(self, counts: Counter, classes, known=None) -> None:
        """Counts per class; a class with none (among ``known`` ones) is a problem."""
        self.per_class = {c: counts.get(c, 0) for c in classes}
        for cls, count in self.per_class.items():
            if count == 0 and (known is None or cls in known):
                self.add('empty_class', repr(cls))

    @property
    def crashes(self) -> bool:
        return any(KINDS[k][1] for k, v in self.problems.items() if v)

    def image_scale(self, multiple: int = 32) -> Optional[Tuple[int, int]]:
        """(long, short) median sides, rounded to ``multiple``: the templates' image_scale."""
        if not self.image_sizes:
            return None
        long_side = statistics.median(max(s) for s in self.image_sizes)
        short_side = statistics.median(min(s) for s in self.image_sizes)
        return tuple(max(multiple, int(round(v / multiple)) * multiple) for v in (long_side, short_side))


# --------------------------------------------------------------------------- files
def inspect_image(path: str, decode: bool = False) -> Tuple[Optional[Tuple[int, int]], Optional[str]]:
    """((w, h), None) for a readable image, (None, 'missing' | reason) otherwise."""
    from PIL import Image
    if not osp.isfile(path):
        return None, 'missing'
    try:
        with Image.open(path) as image:
            size = image.size
            if decode:
                image.load()
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError
        return None, f'{type(e).__name__}: {str(e)[:120]}'
    if not decode:
        with open(path, 'rb') as f:
            head = f.read(8)
            for starts, marker in END_MARKERS:
                if head.startswith(starts):
                    f.seek(max(0, os.fstat(f.fileno()).st_size - END_SEARCH_BYTES))
                    if marker not in f.read():
                        return None, 'cut short: no end-of-image marker'
    return size, None


def inspect_label(path: str) -> Tuple[Optional[dict], Optional[str]]:
    """({'size', 'channels', 'values': counts per value}, None) or (None, 'missing' | reason)."""
    from PIL import Image
    if not osp.isfile(path):
        return None, 'missing'
    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except Exception as e:
        return None, f'{type(e).__name__}: {str(e)[:120]}'
    channels = 1 if array.ndim == 2 else array.shape[2]
    values = Counter()
    if channels == 1 and array.size:
        counts = np.bincount(array.ravel().astype(np.int64)) if array.min() >= 0 else None
        values = Counter({int(v): int(c) for v, c in enumerate(counts) if c}) if counts is not None else \
            Counter(np.unique(array).tolist())
    return dict(size=(array.shape[1], array.shape[0]), channels=channels, values=values), None


def _image_task(args):
    return inspect_image(*args)


def _pair_task(args):
    image, label, decode = args
    return inspect_image(image, decode), inspect_label(label)


def run_parallel(func, tasks: list, nproc: int) -> list:
    """func over tasks in ``nproc`` processes with a progress bar (mmengine's)."""
    if not tasks:
        return []
    from mmengine.utils import track_parallel_progress, track_progress
    if nproc <= 1:
        return track_progress(func, tasks)
    return track_parallel_progress(func, tasks, nproc, chunksize=max(1, min(64, len(tasks) // (8 * nproc))))


# --------------------------------------------------------------------------- class order
#: a COCO JSON up to this size is parsed whole for its categories; a larger one (COCO's train
#: JSON: 450 MB) is searched from its end, where COCO writes them, before it is parsed whole
WHOLE_JSON_BYTES = 64 << 20
_CATEGORIES_KEY = re.compile(rb'"categories"\s*:\s*(?=\[)')


def json_categories(ann_file: str) -> List[dict]:
    """The ``categories`` list of a COCO JSON, read cheaply from a large file."""
    if osp.getsize(ann_file) > WHOLE_JSON_BYTES:
        import mmap
        with open(ann_file, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            at = data.rfind(b'"categories"')
            key = _CATEGORIES_KEY.match(data, at) if at >= 0 else None
            if key:
                try:
                    categories, _ = json.JSONDecoder().raw_decode(data[key.end():].decode('utf-8'))
                except ValueError:
                    categories = None
                if isinstance(categories, list) and all(isinstance(c, dict) and 'name' in c
                                                        for c in categories):
                    return categories
    with open(ann_file) as f:
        return json.load(f).get('categories', [])


def label_names(classes: Sequence[str], categories: List[dict]) -> Tuple[str, ...]:
    """The names of mmdet's labels 0, 1, ...: the JSON categories named in ``classes``, in the
    JSON's order. mmdet's CocoDataset (and CocoMetric) number them with
    ``COCO.get_cat_ids(cat_names=classes)``, which keeps the order of the JSON's list."""
    wanted = set(classes)
    return tuple(c['name'] for c in categories if c.get('name') in wanted)


def class_order_problem(classes: Sequence[str], categories: List[dict]) -> Optional[str]:
    """One line saying why label i would not be ``classes[i]`` (ending in the ``classes = (...)``
    to paste), or None when they agree. Classes missing from the JSON are another problem
    (``class_not_in_json``) and give None here."""
    names = label_names(classes, categories)
    if set(names) != set(classes):
        return None
    twice = [n for n, k in Counter(names).items() if k > 1]
    if twice:
        ids = [c.get('id') for c in categories if c.get('name') == twice[0]]
        return (f'category name {twice[0]!r} appears {len(ids)} times in the JSON (ids {ids}): '
                'mmdet gives each its own label, beyond len(classes); merge them into one category')
    if names == tuple(classes):
        return None
    i = next(i for i, (a, b) in enumerate(zip(names, classes)) if a != b)
    return (f'mmdet numbers the labels in the order of the JSON\'s categories, not of classes: '
            f'label {i} is {names[i]!r} but would be named {classes[i]!r}; set classes = {names!r} '
            '(and palette, if any, in that order)')


def is_coco(dataset) -> bool:
    """mmdet's CocoDataset family on a JSON file."""
    return str(getattr(dataset, 'ann_file', '') or '').endswith('.json') and hasattr(dataset, 'COCOAPI')


def coco_classes_problem(dataset) -> Optional[str]:
    """One line when a (lazily built) COCO data set's labels would not be named by its
    ``classes`` (a name missing from the JSON, or another order), else None."""
    if not is_coco(dataset) or not osp.isfile(dataset.ann_file):
        return None
    classes = tuple(dataset.metainfo.get('classes') or ())
    categories = json_categories(dataset.ann_file)
    known = [c.get('name') for c in categories]
    missing = [c for c in classes if c not in known]
    if missing:
        return (f'classes {missing} are not among the categories of {dataset.ann_file} '
                f'({", ".join(map(repr, known[:8]))}{", ..." if len(known) > 8 else ""}): spell '
                'classes exactly as the JSON does (a missing name shifts the labels after it)')
    problem = class_order_problem(classes, categories)
    return problem and f'{dataset.ann_file}: {problem}'


def lazy_datasets(cfg, loader: str) -> List[Tuple[dict, object]]:
    """(config, data set) of each leaf data set of the dataloader ``loader``, built as the Runner
    builds it (paths joined, default classes filled in) without reading its annotations."""
    from mmengine.registry import DATASETS, DefaultScope

    from .data_paths import leaf_datasets
    loader_cfg = cfg.get(loader)
    if not isinstance(loader_cfg, dict):
        return []
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        return [(leaf, DATASETS.build(dict(leaf, lazy_init=True)))
                for leaf in leaf_datasets(loader_cfg.get('dataset'))]


def check_class_order(cfg, loaders: Sequence[str] = ('train_dataloader', )) -> None:
    """Raise a one-line ValueError when the labels of a COCO-format data set of ``loaders`` would
    not be named by its ``classes`` (the line holds the ``classes = (...)`` to paste).

    Checkpoints, exports, logs and painted results name label i ``classes[i]``; mmdet numbers the
    labels in the JSON's category order, so another order would name every prediction wrongly.
    """
    if cfg.get('default_scope') != 'mmdet':  # COCO-format data sets are mmdet's
        return
    for loader in loaders:
        for _, dataset in lazy_datasets(cfg, loader):
            problem = coco_classes_problem(dataset)
            if problem:
                raise ValueError(f'{loader}: {problem}')


# --------------------------------------------------------------------------- detection
def _valid_polygon(polygon) -> bool:
    return (isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in polygon))


def _rle_problem(segmentation: dict, height: int, width: int) -> Optional[str]:
    from pycocotools import mask as mask_utils
    size = segmentation.get('size')
    if not (isinstance(size, list) and len(size) == 2) or 'counts' not in segmentation:
        return 'no size/counts'
    if tuple(size) != (height, width):
        return f'size {size} but the image is {height}x{width}'
    try:
        rle = mask_utils.frPyObjects(segmentation, *size) if isinstance(segmentation['counts'], list) \
            else segmentation
        mask_utils.decode(rle)
    except Exception as e:
        return f'{type(e).__name__}: {e}'
    return None


def check_coco(name: str, ann_file: str, img_dir: str, classes, decode: bool = False,
               nproc: int = 1) -> Report:
    """A COCO JSON as mmdet's CocoDataset reads it: objects of the categories named in ``classes``,
    labels numbered in the JSON's category order (:func:`label_names`)."""
    with open(ann_file) as f:
        coco = json.load(f)
    report = Report(name, 'det')
    images, categories = coco.get('images', []), coco.get('categories', [])
    report.samples = len(images)
    by_name = {c['name']: c['id'] for c in categories}
    category_ids = {c['id'] for c in categories}
    for cls in classes:
        if cls not in by_name:
            report.add('class_not_in_json', repr(cls))
    order = class_order_problem(classes, categories)
    if order:
        report.add('class_order', order)
    class_of = {by_name[c]: c for c in classes if c in by_name}
    seen, info = set(), {}
    for image in images:
        if image['id'] in seen:
            report.add('duplicate_image_id', f"{image['file_name']} (id {image['id']})")
        seen.add(image['id'])
        info[image['id']] = image
    ann_ids, with_objects = set(), set()
    instances = Counter()
    for ann in coco.get('annotations', []):
        image = info.get(ann.get('image_id'))
        where = f"{image['file_name'] if image else '?'} (annotation {ann.get('id')})"
        if ann.get('id') in ann_ids:
            report.add('duplicate_ann_id', where)
        ann_ids.add(ann.get('id'))
        if image is None:
            report.add('unknown_image_id', f"annotation {ann.get('id')} (image_id {ann.get('image_id')})")
            continue
        if ann.get('category_id') not in category_ids:
            report.add('unknown_category', f"{where}: category_id {ann.get('category_id')}")
            continue
        box = ann.get('bbox')
        valid_box = isinstance(box, list) and len(box) == 4 and all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in box)
        if valid_box:
            x, y, w, h = box
            valid_box = (w > 0 and h > 0 and x < image['width'] and y < image['height']
                         and x + w > 0 and y + h > 0)
        if not valid_box:
            report.add('bad_box', f'{where}: bbox {box}')
        segmentation = ann.get('segmentation')
        if isinstance(segmentation, list) and segmentation:
            if not all(_valid_polygon(p) for p in segmentation):
                report.add('bad_polygon', f'{where}: {min(len(p) // 2 for p in segmentation)} points')
        elif isinstance(segmentation, dict):
            problem = _rle_problem(segmentation, image['height'], image['width'])
            if problem:
                report.add('bad_rle', f'{where}: {problem}')
        if valid_box and ann['category_id'] in class_of and not ann.get('iscrowd', 0):
            instances[class_of[ann['category_id']]] += 1
            report.object_sizes.append(math.sqrt(box[2] * box[3]))
            with_objects.add(image['id'])
    report.set_per_class(instances, classes, known=by_name)
    for image in images:
        if image['id'] not in with_objects:
            report.add('no_annotations', image['file_name'])
    paths = [osp.join(img_dir, image['file_name']) for image in images]
    for image, path, (size, problem) in zip(images, paths, run_parallel(
            _image_task, [(p, decode) for p in paths], nproc)):
        if report.add_image(path, size, problem) and size != (image.get('width'), image.get('height')):
            report.add('size_mismatch', f"{path}: {size[0]}x{size[1]}, JSON {image.get('width')}x"
                       f"{image.get('height')}")
    return report


# --------------------------------------------------------------------------- segmentation
def check_seg(name: str, pairs: List[Tuple[str, str]], classes, reduce_zero_label: bool,
              ignore_index: int = 255, decode: bool = False, nproc: int = 1,
              label_map: Optional[Dict[int, int]] = None) -> Report:
    """(image, label map) pairs as mmseg reads them: value v is class v (v - 1 with
    reduce_zero_label, 0 then ignored), then ``label_map`` (mmseg's: the data set type's class
    index -> index in ``classes``, 255 for a class left out); ``ignore_index`` is ignored."""
    report = Report(name, 'seg', samples=len(pairs))
    images_with = Counter()
    for (image_path, label_path), ((size, problem), (label, label_problem)) in zip(
            pairs, run_parallel(_pair_task, [(i, s, decode) for i, s in pairs], nproc)):
        report.add_image(image_path, size, problem)
        if label_problem == 'missing':
            report.add('missing_label', label_path)
            continue
        if label_problem:
            report.add('undecodable_label', f'{label_path}: {label_problem}')
            continue
        if label['channels'] != 1:
            report.add('label_channels', f"{label_path}: {label['channels']} channels")
            continue
        if size is not None and label['size'] != size:
            report.add('label_size', f"{label_path}: {label['size'][0]}x{label['size'][1]}, "
                       f'image {size[0]}x{size[1]}')
        outside = []
        for value in label['values']:
            if value == ignore_index or (reduce_zero_label and value == 0):
                continue
            index = value - 1 if reduce_zero_label else value
            if label_map:
                index = label_map.get(index, index)
                if index == ignore_index:  # a class of the type left out of classes
                    continue
            if 0 <= index < len(classes):
                images_with[classes[index]] += 1
            else:
                outside.append(value)
        if outside:
            report.add('label_values', f'{label_path}: values {sorted(outside)[:8]} (classes: '
                       f'{len(classes)}{", reduce_zero_label" if reduce_zero_label else ""})')
    report.set_per_class(images_with, classes)
    return report


# --------------------------------------------------------------------------- classification
def check_cls(name: str, samples: List[Tuple[str, int]], classes, decode: bool = False,
              nproc: int = 1) -> Report:
    """(image, label index) pairs as mmpretrain lists them."""
    report = Report(name, 'cls', samples=len(samples))
    counts = Counter()
    for (path, label), (size, problem) in zip(samples, run_parallel(
            _image_task, [(p, decode) for p, _ in samples], nproc)):
        report.add_image(path, size, problem)
        if classes and not 0 <= int(label) < len(classes):
            report.add('bad_label', f'{path}: label {label} (classes: {len(classes)})')
        elif classes:
            counts[classes[int(label)]] += 1
    report.set_per_class(counts, classes or ())
    return report


def _data_infos(dataset) -> List[dict]:
    dataset.full_init()  # (serialize_data empties data_list: read through get_data_info)
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def check_dataset(dataset, name: str, decode: bool = False, nproc: int = 1) -> Report:
    """Check a data set built (lazily) from a config, by the kind of its files."""
    classes = tuple(dataset.metainfo.get('classes') or ())
    if is_coco(dataset):
        return check_coco(name, dataset.ann_file, dataset.data_prefix.get('img', ''), classes, decode, nproc)
    if hasattr(dataset, 'seg_map_suffix'):  # mmseg's BaseSegDataset
        pairs = [(d['img_path'], d['seg_map_path']) for d in _data_infos(dataset)]
        label_map = getattr(dataset, 'label_map', None)
        report = check_seg(name, pairs, classes, bool(getattr(dataset, 'reduce_zero_label', False)),
                           getattr(dataset, 'ignore_index', 255), decode, nproc, label_map)
        type_classes = type(dataset).METAINFO.get('classes') or ()
        left_out = [c for i, c in enumerate(type_classes) if (label_map or {}).get(i) == 255]
        if left_out:  # mmseg maps the listed classes by name: their order is free
            report.add('unlisted_classes', f'{type(dataset).__name__}: {len(left_out)} of its '
                       f'{len(type_classes)} classes, e.g. {left_out[:5]}')
        return report
    if hasattr(dataset, 'load_data_list'):  # mmpretrain: a list of images and labels
        samples = [(d['img_path'], int(np.asarray(d.get('gt_label', -1)).reshape(-1)[0]))
                   for d in _data_infos(dataset)]
        return check_cls(name, samples, classes, decode, nproc)
    raise ValueError(f'{type(dataset).__name__}: no checks for this data set type (COCO JSON, '
                     'mmseg folders and mmpretrain lists are supported)')


# --------------------------------------------------------------------------- output
def table(reports: List[Report]) -> str:
    """One row per problem kind, one count column per data set."""
    kinds = [k for k in KINDS if any(r.problems.get(k) for r in reports)]
    head = ['problem', 'crash'] + [r.name for r in reports]
    rows = [['samples', ''] + [str(r.samples) for r in reports]]
    rows += [[KINDS[k][0], 'yes' if KINDS[k][1] else 'no'] + [str(len(r.problems.get(k, [])))
                                                              for r in reports] for k in kinds]
    widths = [max(len(row[i]) for row in [head] + rows) for i in range(len(head))]
    line = lambda row: '| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths)) + ' |'  # noqa: E731
    return '\n'.join([line(head), '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
                     + [line(row) for row in rows])


def problem_lines(report: Report, first: int = 3) -> List[str]:
    """One line per problem kind: error (training crashes) or warning, count, first cases, fix."""
    lines = []
    for kind, (what, crash, fix) in KINDS.items():
        found = report.problems.get(kind)
        if not found:
            continue
        more = f' (and {len(found) - first} more)' if len(found) > first else ''
        lines.append(f"{'error' if crash else 'warning'}: {report.name}: {len(found)} x {what}: "
                     f"{'; '.join(found[:first])}{more} -> {fix}")
    return lines


def write_histograms(report: Report, out_dir: str) -> List[str]:
    """image_sizes / object_sizes / per_class PNGs of one data set; returns the files."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    os.makedirs(out_dir, exist_ok=True)
    written = []

    def save(fig, kind):
        path = osp.join(out_dir, f'{report.name}_{kind}.png')
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    if report.image_sizes:
        fig, ax = plt.subplots(figsize=(5, 4))
        sizes = np.array(report.image_sizes)
        ax.scatter(sizes[:, 0], sizes[:, 1], s=8, alpha=0.4)
        ax.set(xlabel='width (px)', ylabel='height (px)',
               title=f'{report.name}: image sizes ({len(sizes)}), image_scale {report.image_scale()}')
        save(fig, 'image_sizes')
    if report.object_sizes:
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.hist(report.object_sizes, bins=50)
        for edge in (32, 96):  # COCO's small / medium / large
            ax.axvline(edge, color='gray', linestyle='--')
        ax.set(xlabel='sqrt(box area), px (dashed: COCO small | medium | large)', ylabel='objects',
               title=f'{report.name}: object sizes ({len(report.object_sizes)})')
        save(fig, 'object_sizes')
    if report.per_class:
        unit = {'det': 'instances', 'seg': 'images containing the class', 'cls': 'images'}[report.task]
        fig, ax = plt.subplots(figsize=(max(5, 0.3 * len(report.per_class)), 4))
        ax.bar(range(len(report.per_class)), list(report.per_class.values()))
        ax.set_xticks(range(len(report.per_class)), list(report.per_class), rotation=90, fontsize=7)
        ax.set(ylabel=unit, title=f'{report.name}: {unit} per class')
        save(fig, 'per_class')
    return written
