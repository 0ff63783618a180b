"""Four users at once on the web app: how long each waits, from sending the photograph to having the result.

Starts `python app.py` on a free port, then four gradio_client users press Segment at the same moment:
one with an 8-megapixel photograph (the sample resized to 3504x2336) and three with the sample
(565x584); then the sample alone. Prints each user's wait (upload, queue, segmentation, download of
the results) and the server's peak memory.

    python docs/app_four_users.py
"""
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from imio import read_image, write_png  # noqa: E402
from preprocess import resize  # noqa: E402


def main():
    from gradio_client import Client, handle_file

    tmp = Path(tempfile.mkdtemp())
    sample = REPO / "predict" / "img.png"
    write_png(tmp / "big.png", resize(read_image(sample), (3504, 2336)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port)], stdout=subprocess.PIPE,
                              text=True)
    try:
        while "open http" not in server.stdout.readline():
            pass
        url = f"http://127.0.0.1:{port}/"
        clients = [Client(url, verbose=False) for _ in range(4)]

        def user(i, photo):
            t0 = time.perf_counter()
            clients[i].predict(handle_file(str(photo)), "DRIVE, whole image", 0.47, False, api_name="/segment")
            return time.perf_counter() - t0

        user(0, sample)  # the model is loaded and warm
        user(0, tmp / "big.png")
        alone = [user(1, sample) for _ in range(3)]
        photos = [tmp / "big.png", sample, sample, sample]
        with ThreadPoolExecutor(4) as pool:
            futures = []
            for i, p in enumerate(photos):
                futures.append(pool.submit(user, i, p))
                time.sleep(0.05)  # the 8-megapixel photograph is sent first
            waits = [f.result() for f in futures]
        rss = int(next(line.split()[1] for line in open(f"/proc/{server.pid}/status") if line.startswith("VmHWM")))
        print(f"the sample alone: {min(alone):.2f} s (best of 3)")
        print("four at once: 8 MP " + f"{waits[0]:.2f} s; samples " + ", ".join(f"{w:.2f}" for w in waits[1:]) + " s")
        print(f"server peak memory (VmHWM): {rss / 1024:.0f} MB")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
