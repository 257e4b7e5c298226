"""The one image-name rule: what it accepts, and refusals that state the rule and the limit."""

from __future__ import annotations

import pytest

from imagefactory.errors import RecipeError
from imagefactory.home import Home
from imagefactory.names import NAME_MAX, check_name, name_problem
from imagefactory.repo import image_name


@pytest.mark.parametrize("name", ["a", "hello-binder", "0day", "a" * NAME_MAX, "x-1-y"])
def test_valid_names(name: str) -> None:
    assert name_problem(name) is None and check_name(name) == name


@pytest.mark.parametrize(("name", "problem"), [
    ("", "empty"), ("a" * 64, "64 characters long, over the limit of 63"), ("-x", "starts with a dash"),
    ("Hello", "lowercase"), ("../../x", "lowercase"), ("a b", "lowercase"), ("a_b", "lowercase"),
])
def test_invalid_names_say_why_and_the_rule(name: str, problem: str) -> None:
    with pytest.raises(RecipeError) as err:
        check_name(name, "recipe name", RecipeError)
    assert problem in err.value.message and err.value.message.startswith(f"recipe name {name!r}")
    assert err.value.hint == "an image name is 1 to 63 lowercase letters, digits and dashes, starting with a " \
                             "letter or digit"


def test_a_huge_name_is_quoted_short() -> None:
    with pytest.raises(RecipeError) as err:
        check_name("x" * 100_000, "name", RecipeError)
    assert len(str(err.value)) < 300


def test_recipe_path_checks_the_name(tmp_path: object) -> None:
    home = Home(tmp_path)  # type: ignore[arg-type]
    assert home.recipe_path("demo").name == "demo.yaml"
    with pytest.raises(RecipeError, match="not a valid image name"):
        home.recipe_path("../../etc/passwd")


def test_names_made_from_repositories_follow_the_rule() -> None:
    assert image_name("https://github.com/ChristinaB/dhsvm-opt.git") == "dhsvm-opt"
    assert len(image_name("/x/" + "Long_Name" * 20)) <= NAME_MAX
