"""The photo set our builtin models are trained and measured on.

Every photo comes from a Debian package, fetched with `apt-get download` and unpacked with `dpkg -x`; nothing else
is used for training. Plasma ships the same picture at several sizes: we take exactly one file per wallpaper folder.
The held-out photos are never seen by a training script; our quality figures and the quality test crops come from
them only.

Three training sets (`--photo-set` of the training scripts):
- `v1`: the 21 photos of `mate-backgrounds` and `plasma-workspace-wallpapers` (GPL-2+), behind every model trained
  before 2026-11-27;
- `v2` (the default): v1 and 14 photographs of `lomiri-wallpapers-16.04` / `-20.04` (Ubuntu's community wallpaper
  contest, CC-BY-4.0, CC-BY-SA-3.0/4.0 and CC0-1.0: see the package's copyright file; the model card credits the
  photographers). They bring what the wallpapers lack: cables against the sky, grass and dandelion seeds, brush
  bristles, dog fur, tree bark, indoor scenes. Their rendered art (Fossa, Infinite-Sea, Painting-Colors,
  analogpattern, umang) is left out.
- `v3`: v2 and 14 photographs of `budgie-backgrounds` 3.0 (CC0-1.0, Debian trixie: bookworm does not have it, so
  its .deb is fetched from the Debian archive's pool by URL and checked against its sha256). 4K photographs of what
  the others lack: cities and buildings (Boston, Singapore, Milan, Barcelona's Casa Mila, the Colosseum), a desert
  dune, mountains and a lake, tea gardens, flowers, birds and otters. Its woodblock print (ocean-waves), its two
  rendered wallpapers (valley-midnight, waves-midnight) and the mostly black Saturn are left out.

    python training/photos.py            # downloads, unpacks, prints the split
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import urllib.request
from pathlib import Path

DEFAULT_ROOT = Path("/var/cache/retouch-photos")
PACKAGES = ("mate-backgrounds", "plasma-workspace-wallpapers", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04")

MATE = "usr/share/backgrounds/mate"
PLASMA = "usr/share/wallpapers"
LOMIRI = "usr/share/backgrounds"

# Real photographs (and one painting) only: rendered abstract art and logos are left out.
TRAIN = (
    f"{MATE}/nature/Aqua.jpg",
    f"{MATE}/nature/Blinds.jpg",
    f"{MATE}/nature/FreshFlower.jpg",
    f"{MATE}/nature/Garden.jpg",
    f"{MATE}/nature/GreenMeadow.jpg",
    f"{MATE}/nature/RainDrops.jpg",
    f"{MATE}/nature/Storm.jpg",
    f"{MATE}/nature/TwoWings.jpg",
    f"{MATE}/nature/Wood.jpg",
    f"{MATE}/nature/YellowFlower.jpg",
    f"{MATE}/abstract/Elephants_5640x3172.jpg",
    f"{PLASMA}/Autumn/contents/images/2560x1600.jpg",
    f"{PLASMA}/BytheWater/contents/images/2560x1600.jpg",
    f"{PLASMA}/ColdRipple/contents/images/2560x1600.jpg",
    f"{PLASMA}/ColorfulCups/contents/images/2560x1600.jpg",
    f"{PLASMA}/DarkestHour/contents/images/2560x1600.jpg",
    f"{PLASMA}/FallenLeaf/contents/images/2560x1600.jpg",
    f"{PLASMA}/Grey/contents/images/2560x1600.jpg",
    f"{PLASMA}/Kite/contents/images/2560x1600.jpg",
    f"{PLASMA}/OneStandsOut/contents/images/2560x1600.jpg",
    f"{PLASMA}/summer_1am/contents/images/2560x1600.jpg",
)
LOMIRI_PHOTOS = (
    f"{LOMIRI}/Bridge_by_Sander_Klootwijk.jpg",
    f"{LOMIRI}/Dragonfly_by_Bolly.jpg",
    f"{LOMIRI}/Kleiber_by_Lukas_Baubkus.jpg",
    f"{LOMIRI}/Picture_0B_by_freespace.jpg",
    f"{LOMIRI}/Picture_1A_by_freespace.jpg",
    f"{LOMIRI}/Wine_by_Jakkub_Mede.jpg",
    f"{LOMIRI}/aitzgorri_by_Aitzol_Berasategi.jpg",
    f"{LOMIRI}/free_by_Peter_Nerlich.jpg",
    f"{LOMIRI}/friends_by_Aitzol_Berasategi.jpg",
    f"{LOMIRI}/greentock_by_Peter_Nerlich.jpg",
    f"{LOMIRI}/life_by_Aitzol_Berasategi.jpg",
    f"{LOMIRI}/picosdeeuropa_by_Aitzol_Berasategi.jpg",
    f"{LOMIRI}/seeding_by_Clements_Engelhardt.jpg",
    f"{LOMIRI}/sunset_by_Aitzol_Berasategi.jpg",
)
BUDGIE = "usr/share/backgrounds/budgie"
# (url, sha256): packages of a newer Debian release than the machine's, fetched from the archive's pool
POOL_DEBS = (("http://deb.debian.org/debian/pool/main/b/budgie-backgrounds/budgie-backgrounds_3.0-1_all.deb",
              "b91c2d5209558bc11d8d3a161f22a608857e3f8c735980cfab0d6650b03014ca"),)
BUDGIE_PHOTOS = tuple(f"{BUDGIE}/{name}.jpg" for name in (
    "abstract-spiral", "beacon-street-sunset", "blue-periwinkle", "canyon-wren", "casa-mila", "extreme-desert-hike",
    "high-trestle-trail", "lake-sherburne", "oakland-zoo-otters", "perched-osprey", "piazza-gae-aulenti",
    "roman-colosseum", "singaporean-cityscape", "tea-gardens"))
PHOTO_SETS = {"v1": TRAIN, "v2": TRAIN + LOMIRI_PHOTOS, "v3": TRAIN + LOMIRI_PHOTOS + BUDGIE_PHOTOS}
HELD_OUT = (
    f"{MATE}/nature/Dune.jpg",
    f"{MATE}/nature/LadyBird.jpg",
    f"{PLASMA}/EveningGlow/contents/images/2560x1600.jpg",
    f"{PLASMA}/Path/contents/images/2560x1600.jpg",
)


def ensure_photos(root: Path = DEFAULT_ROOT) -> Path:
    """Download and unpack the Debian packages into `root` unless they are there already."""
    wanted = PHOTO_SETS["v3"] + HELD_OUT
    if all((root / rel).exists() for rel in wanted):
        return root
    root.mkdir(parents=True, exist_ok=True)
    debs = root / "debs"
    debs.mkdir(exist_ok=True)
    if not all(any(debs.glob(f"{name}_*.deb")) for name in PACKAGES):
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=debs, check=True)
    for url, sha256 in POOL_DEBS:
        fetch_checked(url, sha256, debs / url.rsplit("/", 1)[1])
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    missing = [rel for rel in wanted if not (root / rel).exists()]
    if missing:
        raise FileNotFoundError(f"photos missing after unpacking: {missing}")
    return root


def fetch_checked(url: str, sha256: str, dest: Path) -> None:
    """Download `url` to `dest` unless it is there with the right sha256 (ValueError when the download has another)."""
    if dest.exists() and hashlib.sha256(dest.read_bytes()).hexdigest() == sha256:
        return
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (a fixed https/http archive URL)
        data = response.read()
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise ValueError(f"{url}: sha256 {got}, expected {sha256}")
    dest.write_bytes(data)


def train_paths(root: Path = DEFAULT_ROOT, photo_set: str = "v2") -> list[Path]:
    if photo_set not in PHOTO_SETS:
        raise ValueError(f"unknown photo set {photo_set!r}: one of {', '.join(PHOTO_SETS)}")
    return [root / rel for rel in PHOTO_SETS[photo_set]]


def add_photo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--photos", type=Path, default=DEFAULT_ROOT, help="where the photo packages are unpacked")
    parser.add_argument("--photo-set", choices=sorted(PHOTO_SETS), default="v2",
                        help="training photos: v1 = the 21 GPL-2+ wallpapers, v2 = v1 + 14 Lomiri photographs, "
                             "v3 = v2 + 14 Budgie photographs")
    parser.add_argument("--skimage-dir", type=Path, help="a copy of scikit-image's images (default: its package)")


# scikit-image's bundled photographs and textures (several grayscale): texture the wallpapers lack. Used by the
# restorers' training (denoise, sharpen) only; none of them is held out.
SKIMAGE_IMAGES = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "brick.png",
                  "grass.png", "gravel.png", "camera.png", "coins.png", "moon.png")


def skimage_paths(folder: Path | None = None) -> list[Path]:
    """scikit-image's bundled images, from its package or from `folder` (a copy of them, e.g. on a GPU machine)."""
    if folder is None:
        import skimage

        folder = Path(skimage.__file__).parent / "data"
    return [folder / name for name in SKIMAGE_IMAGES]


def held_out_paths(root: Path = DEFAULT_ROOT) -> list[Path]:
    return [root / rel for rel in HELD_OUT]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args()
    root = ensure_photos(args.root)
    sets = ", ".join(f"{name}: {len(paths)}" for name, paths in PHOTO_SETS.items())
    print(f"training photos ({sets}), {len(HELD_OUT)} held out, under {root}")


if __name__ == "__main__":
    main()
