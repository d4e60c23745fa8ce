"""The README's first steps are what a new user (and ../shared/tools/newcomer-run) runs: the block under
"## Install", then the one under "## Run the main job"; every page it links exists."""

import re
from pathlib import Path

README = Path("README.md").read_text()


def _block(heading: str) -> str:
    """The first ```bash block after the heading that starts with `heading`."""
    after = README[README.index("\n" + heading):]
    return re.search(r"```bash\n(.*?)```", after, flags=re.S).group(1)


def test_the_install_and_the_main_job_are_where_a_new_user_looks():
    assert "pip install torch==2.13.0" in _block("## Install")
    assert _block("## Run the main job").strip() == "kdstudy run search_spaces/smoke.yaml"


def test_every_page_the_readme_links_exists():
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README)
    assert links and [link for link in links if not Path(link).exists()] == []
