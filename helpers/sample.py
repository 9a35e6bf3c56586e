"""The bundled synthetic chest CT (stub; see issue 2)."""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

def default_dicom_dir():
    """Folder the chapters read: $DICOM_DIR, else data/$DATASET, else the generated sample."""
    if os.environ.get("DICOM_DIR"):
        return Path(os.environ["DICOM_DIR"])
    raise NotImplementedError

if __name__ == "__main__":
    print("sample generator not written yet")
