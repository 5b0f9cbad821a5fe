"""Developer tool (``make migrations``): regenerate ``0001_initial`` from ``tables.py``.

Only valid before the first release (see migrations/README.md). Autogenerates against an
empty SQLite database in a scratch copy of the migration environment, then puts the
result in ``versions/0001_initial.py``; hand-written revisions are left alone.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config

from alphapulse_dagster.db.migrate import MIGRATIONS_DIR


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        env_dir = Path(scratch) / "migrations"
        (env_dir / "versions").mkdir(parents=True)
        for name in ("env.py", "script.py.mako"):
            shutil.copy(MIGRATIONS_DIR / name, env_dir / name)
        config = Config()
        config.set_main_option("script_location", str(env_dir))
        config.set_main_option("sqlalchemy.url", f"sqlite:///{scratch}/empty.db")
        command.revision(config, message="initial", autogenerate=True, rev_id="0001")
        (generated,) = (env_dir / "versions").glob("0001_*.py")
        target = MIGRATIONS_DIR / "versions" / "0001_initial.py"
        target.write_text(generated.read_text())
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
