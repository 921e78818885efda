"""What the tests know of the CIFAR data from outside birr: appendix §2's class order for seed 0, the
official class-name lists, and the repository's JPEG copy with its sha256."""
import hashlib
from pathlib import Path

from birr import data

# appendix §2: original CIFAR-100 fine-label ids of each task, seed 0, in the order of new labels
SPEC_TASKS = [
    [52, 40, 2, 22, 44, 49, 26, 14, 19, 94],
    [60, 56, 87, 13, 68, 45, 6, 46, 36, 70],
    [76, 92, 16, 58, 17, 80, 0, 35, 54, 71],
    [15, 61, 66, 18, 53, 57, 91, 81, 48, 84],
    [47, 43, 42, 20, 99, 24, 83, 98, 25, 72],
    [55, 34, 59, 10, 8, 3, 37, 63, 86, 51],
    [30, 41, 21, 38, 97, 85, 62, 96, 33, 75],
    [89, 23, 78, 7, 39, 4, 29, 79, 12, 64],
    [31, 82, 28, 93, 67, 65, 1, 90, 88, 69],
    [32, 50, 11, 5, 77, 9, 95, 73, 74, 27],
]
SPEC_T1_NAMES = ["oak_tree", "lamp", "baby", "clock", "lizard", "mountain", "crab", "butterfly", "cattle", "wardrobe"]
SPEC_T2_NAMES = ["plain", "palm_tree", "television", "bus", "road", "lobster", "bee", "man", "hamster", "rose"]

# the standard alphabetical CIFAR-100 fine-label list, as in the official meta file
CIFAR100_NAMES = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel
can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant
flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree
motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel
streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale
willow_tree wolf woman worm""".split()
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
JPG_ARCHIVE = Path(data.__file__).resolve().parents[1] / "data" / "cifar10-jpg.tar.gz"
JPG_SHA256 = "db2e01add8b211304937cae29dd074ff182973a7ffa48854c2df87b06410f407"


def digest(path, algorithm):
    return hashlib.new(algorithm, Path(path).read_bytes()).hexdigest()


def leftovers(folder):
    """Names in folder (recursively) that look like temporary or partial files."""
    return [p.name for p in Path(folder).rglob("*") if p.name.startswith(".") or p.suffix in (".tmp", ".part")]
