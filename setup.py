"""Ship the repository-root Copier template (and the example specs) inside the wheel.

`template/` and `copier.yml` live at the repository root so that `copier copy <repo>` works;
`liftdeploy render` needs the same files after a plain `pip install`, so the build copies them
into the package as `liftdeploy/_template/`. The checkout stays the single copy.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent


class BuildWithTemplate(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's template directly
            return
        target = Path(self.build_lib) / "liftdeploy" / "_template"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / "template", target / "template")
        shutil.copy2(ROOT / "copier.yml", target / "copier.yml")
        # copier.yml's presets are read from the template root's examples/, as in a checkout.
        (target / "examples").mkdir()
        for spec in (ROOT / "examples").glob("*.yaml"):
            shutil.copy2(spec, target / "examples" / spec.name)
        examples = Path(self.build_lib) / "liftdeploy" / "_examples"
        shutil.rmtree(examples, ignore_errors=True)
        examples.mkdir(parents=True)
        for spec in (ROOT / "examples").glob("*.yaml"):
            shutil.copy2(spec, examples / spec.name)


setup(cmdclass={"build_py": BuildWithTemplate})
