# $BACKGROUND$
# ^ Keep that first line: it makes DigitalMicrograph run this script on a background thread,
#   so DM stays responsive while the bridge serves. (To confirm on the first GMS install
#   that the Python marker is honoured; see docs/dm-install.md, "Start".)
"""Start the ophyd-stem DM bridge inside Gatan DigitalMicrograph.

Open this file in DigitalMicrograph (File > Open), edit the settings below, and run it
(Execute, or Ctrl+Enter). The Output window then shows where the bridge serves. To stop
it, run the two lines printed there (they create a stop file this script watches), or close
DigitalMicrograph. docs/dm-install.md explains every setting.
"""

import logging
import os
import sys
import tempfile
import threading
import time

# ------------------------------------------------------------------------------ settings
HOST = "127.0.0.1"  # loopback: clients on this PC (or through an SSH tunnel) only
PORT = 5555
# Off loopback CurveZMQ is required: paths written by `dm-bridge keys --out FOLDER`.
SERVER_SECRET_KEY = None  # e.g. r"C:\ophyd-stem-keys\server.key_secret"
ALLOWED_CLIENTS = None  # e.g. r"C:\ophyd-stem-keys\clients"

SIGNALS = {"HAADF": 0, "BF": 1}  # detector -> DigiScan signal index (DigiScan setup order)
EELS_ROWS = None  # (top, bottom) camera rows summed into a spectrum; None: camera default
EELS_PROCESSING = "gain_normalized"  # processed (dark + gain corrected) spectra
EELS_SENSOR_WIDTH = 2048  # camera columns along the dispersion
CAMERA_ID = None  # e.g. 3: refuse to acquire unless this is DM's active camera
MAX_EXPOSURE = 10.0  # seconds; longer EELS exposures are refused
MICROSCOPE_NAME = None  # reported to clients by hello
SHOW_IMAGES = False  # show every survey image in DM
LOG_LEVEL = logging.INFO
# ---------------------------------------------------------------------------------------

STOP_FILE = os.path.join(tempfile.gettempdir(), f"ophyd-stem-bridge-{PORT}.stop")

if not hasattr(sys, "argv"):  # DM's embedded Python may start without it
    sys.argv = ["DigitalMicrograph"]

from dm_bridge.backends.base import Limits  # noqa: E402  (after the sys.argv fix)
from dm_bridge.backends.digitalmicrograph import DigitalMicrographBackend  # noqa: E402
from dm_bridge.server import Server  # noqa: E402

logging.basicConfig(
    level=LOG_LEVEL,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    stream=sys.stdout,  # DM's Output window
    force=True,
)


def _watch_stop_file(server, stop_file, done):
    """Stop the server when the stop file appears (DM has no Ctrl+C for scripts)."""
    while not done.is_set():
        if os.path.exists(stop_file):
            print("dm-bridge: stop file found, stopping")
            server.stop(timeout=0)
            return
        time.sleep(0.5)


def _announce(server):
    print(f"dm-bridge: serving {server.backend.kind} at {server.endpoint}")
    print("dm-bridge: to stop, run in a new DM Python window:")
    print(f"    open(r'{STOP_FILE}', 'w').close()")


def main():
    if os.path.exists(STOP_FILE):
        os.remove(STOP_FILE)  # left over from the last run
    backend = DigitalMicrographBackend(
        limits=Limits(max_exposure=MAX_EXPOSURE, sensor_channels=EELS_SENSOR_WIDTH),
        signals=SIGNALS,
        eels_rows=EELS_ROWS,
        eels_processing=EELS_PROCESSING,
        camera_id=CAMERA_ID,
        microscope_name=MICROSCOPE_NAME,
        show_images=SHOW_IMAGES,
    )
    # tests/bridge/dm/test_start_script.py runs this script, so these names stay current.
    server = Server(
        backend,
        host=HOST,
        port=PORT,
        server_secret_key=SERVER_SECRET_KEY,
        allowed_clients=ALLOWED_CLIENTS,
    )
    done = threading.Event()
    watcher = threading.Thread(
        target=_watch_stop_file, args=(server, STOP_FILE, done), name="dm-bridge-stop", daemon=True
    )
    watcher.start()
    try:
        # Instrument commands run here, in DM's script thread: the one that may call DM.
        server.serve_forever(on_ready=_announce)
    finally:
        done.set()
        backend.close()
        if os.path.exists(STOP_FILE):
            os.remove(STOP_FILE)
        print("dm-bridge: stopped")


main()
