"""Random saves and deletes with random power cuts: load is always a version that was saved (hypothesis)."""
import shutil
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.store import Store
from hardware.flashfs import DirFS
from tests.firmware.flaky_fs import PowerCut, PowerCutFS


class ReadOnlyFS(DirFS):
    """Looks without cleaning up, so stray temp files survive into the next save."""

    def remove(self, name):
        raise OSError(30)


step = st.tuples(
    st.one_of(st.binary(max_size=120), st.none()),  # bytes to save, or None: delete
    st.one_of(st.none(), st.integers(0, 140)),  # power budget, None: no cut
    st.booleans(),  # look through a store that cleans up (True) or one that cannot (False)
)


@settings(max_examples=150, deadline=None)
@given(st.lists(step, min_size=1, max_size=12))
def test_load_is_the_last_completed_or_the_one_being_written(steps):
    d = tempfile.mkdtemp(prefix="denloa-store-")
    try:
        last = None  # what the node may rely on: the last save (or delete) that returned
        for data, budget, clean in steps:
            store = Store(PowerCutFS(DirFS(d), budget))
            try:
                if data is None:
                    store.delete("config")
                else:
                    store.save("config", data)
                done = True
            except PowerCut:
                done = False
            got = (Store(DirFS(d)) if clean else Store(ReadOnlyFS(d))).load("config")
            if done:
                assert got == data
            else:
                assert got in (last, data), (got, last, data)
            last = got
    finally:
        shutil.rmtree(d)
