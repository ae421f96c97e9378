from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from py_code_mode.tools.cli import CliArgument
from py_code_mode.tools.models import CliToolConfig, describe_validation_error
from py_code_mode.tools.protocol import ParameterSpec


def tool(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "demo", "command": "echo"}
    data.update(overrides)
    return data


def problem(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        CliToolConfig.model_validate(data)
    return describe_validation_error(info.value)


CURL_LIKE = tool(
    name="curl",
    command="curl",
    schema={
        "options": {
            "silent": {"type": "boolean", "short": "s", "description": "Silent mode"},
            "max-time": {"type": "number", "description": "Max seconds"},
            "request": {"type": "string", "short": "X", "flag": "--request"},
            "header": {"type": "array", "short": "H"},
        },
        "positional": [{"name": "url", "type": "string", "required": True, "description": "URL"}],
    },
    recipes={
        "get": {
            "description": "GET a URL",
            "preset": {"silent": True, "max-time": 10},
            "params": {"url": None, "max_time": {}},
        },
        "post": {"preset": {"request": "POST"}, "params": {"url": {"description": "Where"}}},
    },
)


def test_a_minimal_tool_gets_the_documented_defaults() -> None:
    config = CliToolConfig.model_validate(tool())
    spec = config.to_spec()
    assert config.type == "cli"
    assert spec.timeout == 60.0
    assert spec.args == ()
    assert spec.arguments == ()
    assert spec.recipes == ()
    assert spec.success_exit_codes == frozenset({0})


def test_option_keys_become_python_names_and_keep_their_flag() -> None:
    spec = CliToolConfig.model_validate(CURL_LIKE).to_spec()
    by_name = {a.name: a for a in spec.arguments}
    assert by_name["max_time"].flag == "--max-time"
    assert by_name["silent"].flag == "-s"
    assert by_name["request"].flag == "--request"  # an explicit flag wins over short
    assert by_name["header"].flag == "-H"
    assert by_name["url"] == CliArgument(
        name="url", type="string", kind="positional", required=True, description="URL"
    )
    assert [a.kind for a in spec.arguments] == ["option"] * 4 + ["positional"]


def test_recipe_params_take_type_description_and_default_from_the_schema_and_preset() -> None:
    spec = CliToolConfig.model_validate(CURL_LIKE).to_spec()
    get, post = spec.recipes
    assert get.name == "get"
    assert get.preset == {"silent": True, "max_time": 10}
    assert get.parameters == (
        ParameterSpec(name="url", type="string", description="URL", required=True),
        ParameterSpec(
            name="max_time", type="number", description="Max seconds", required=False, default=10
        ),
    )
    assert post.parameters[0].description == "Where"


def test_recipe_param_default_and_explicit_optional() -> None:
    data = tool(
        schema={"options": {"n": {"type": "integer"}, "v": {"type": "boolean"}}},
        recipes={"r": {"params": {"n": {"default": 3}, "v": {"required": False}}}},
    )
    params = CliToolConfig.model_validate(data).to_spec().recipes[0].parameters
    assert [(p.name, p.required, p.default) for p in params] == [
        ("n", False, 3),
        ("v", False, None),
    ]


def test_a_relative_command_path_is_resolved_against_the_tool_file(tmp_path: Path) -> None:
    config = CliToolConfig.model_validate(tool(command="./bin/run.sh"))
    spec = config.to_spec(source=tmp_path / "run.yaml")
    assert spec.command == str(tmp_path / "./bin/run.sh")
    assert spec.source == str(tmp_path / "run.yaml")
    assert (
        CliToolConfig.model_validate(tool(command="echo"))
        .to_spec(source=tmp_path / "x.yaml")
        .command
        == "echo"
    )


def test_a_wrong_option_type_names_the_field_and_the_accepted_values() -> None:
    message = problem(tool(schema={"options": {"silent": {"type": "bool"}}}))
    assert message.startswith("schema.options.silent.type: Input should be 'boolean', 'string'")


def test_an_unknown_key_is_reported_instead_of_ignored() -> None:
    message = problem(tool(schema={"options": {"silent": {"type": "boolean", "descripton": "x"}}}))
    assert message == "schema.options.silent.descripton: Extra inputs are not permitted"
    assert problem(tool(comand="x")) == "comand: Extra inputs are not permitted"


def test_a_missing_command_is_reported() -> None:
    assert problem({"name": "demo"}) == "command: Field required"


def test_list_positions_appear_in_the_field_path() -> None:
    message = problem(tool(schema={"positional": [{"name": "a"}, {"type": "string"}]}))
    assert message == "schema.positional[1].name: Field required"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"timeout": 0}, "timeout: Input should be greater than 0"),
        ({"timeout": "60"}, "timeout: Input should be a valid number"),
        ({"args": ["-c", 1]}, "args[1]: Input should be a valid string"),
        ({"success_exit_codes": []}, "success_exit_codes: List should have at least 1 item"),
        ({"type": "mcp"}, "type: Input should be 'cli'"),
        ({"command": ""}, "command: String should have at least 1 character"),
    ],
)
def test_bad_top_level_values_are_reported(overrides: dict[str, Any], expected: str) -> None:
    assert problem(tool(**overrides)).startswith(expected)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("my-tool", "not a valid tool name"),
        ("1tool", "not a valid tool name"),
        ("_private", "not a valid tool name"),
        ("class", "Python keyword"),
        ("list", "clashes with the method tools.list()"),
        ("search", "clashes with the method tools.search()"),
    ],
)
def test_tool_names_must_be_reachable_as_attributes(name: str, why: str) -> None:
    message = problem(tool(name=name))
    assert message.startswith("name: ")
    assert why in message


def test_a_command_with_spaces_points_to_args() -> None:
    assert "put fixed arguments in `args`" in problem(tool(command="git status"))


@pytest.mark.parametrize(
    ("option", "field", "why"),
    [
        ({"short": "-s"}, "short", "single letter or digit without the dash"),
        ({"short": "ss"}, "short", "single letter or digit"),
        ({"flag": "max-time"}, "flag", "written as on the command line"),
        ({"flag": "--a b"}, "flag", "written as on the command line"),
    ],
)
def test_flag_spellings_are_checked(option: dict[str, Any], field: str, why: str) -> None:
    message = problem(tool(schema={"options": {"x": option}}))
    assert message.startswith(f"schema.options.x.{field}: ")
    assert why in message


def test_option_keys_that_clash_after_renaming_are_reported() -> None:
    message = problem(tool(schema={"options": {"max-time": {}, "max_time": {}}}))
    assert "schema.options.max_time: clashes with another option called 'max_time'" in message


def test_an_option_key_that_is_a_keyword_suggests_the_flag_override() -> None:
    message = problem(tool(schema={"options": {"from": {}}}))
    assert "schema.options.from: " in message
    assert "flag: --from" in message


def test_a_positional_may_not_reuse_an_option_name() -> None:
    message = problem(tool(schema={"options": {"url": {}}, "positional": [{"name": "url"}]}))
    assert "schema.positional[0].name: 'url' is already the name" in message


def test_a_positional_cannot_be_boolean() -> None:
    message = problem(tool(schema={"positional": [{"name": "flag", "type": "boolean"}]}))
    assert message.startswith("schema.positional[0].type: Input should be 'string'")


@pytest.mark.parametrize(
    ("recipe", "expected"),
    [
        ({"preset": {"nope": 1}}, "recipes.r.preset.nope: not an option or positional; known:"),
        ({"preset": {"silent": "yes"}}, "recipes.r.preset.silent: must be a boolean"),
        ({"params": {"nope": {}}}, "recipes.r.params.nope: not an option or positional"),
        (
            {"params": {"url": {"type": "integer"}}},
            "recipes.r.params.url.type: the schema declares 'url' as string, not integer",
        ),
        ({"params": {"url": {"default": 5}}}, "recipes.r.params.url.default: must be a string"),
        (
            {"params": {"url": {"default": "x", "required": True}}},
            "recipes.r.params.url: `required: true` contradicts the default",
        ),
        ({"params": {}}, "recipes.r: required positional 'url' must be preset"),
        (
            {"params": {"url": {"required": False}}},
            "recipes.r: required positional 'url' must be preset",
        ),
    ],
)
def test_recipes_must_fit_the_schema(recipe: dict[str, Any], expected: str) -> None:
    data = tool(
        schema={
            "options": {"silent": {"type": "boolean"}},
            "positional": [{"name": "url", "required": True}],
        },
        recipes={"r": recipe},
    )
    assert expected in problem(data)


def test_recipe_names_must_be_identifiers() -> None:
    assert "recipes.import: recipe name 'import' is a Python keyword" in problem(
        tool(recipes={"import": {}})
    )
    assert "recipes.my-recipe: recipe name" in problem(tool(recipes={"my-recipe": {}}))


def test_every_recipe_problem_is_reported_at_once() -> None:
    message = problem(tool(recipes={"a": {"preset": {"x": 1}}, "b": {"params": {"y": {}}}}))
    assert "recipes.a.preset.x" in message
    assert "recipes.b.params.y" in message


def test_long_error_lists_are_shortened() -> None:
    options = {f"o{i}": {"type": "nope"} for i in range(15)}
    message = problem(tool(schema={"options": options}))
    assert message.endswith("... and 5 more problem(s)")


def test_a_scalar_where_a_mapping_belongs_is_reported_without_class_names() -> None:
    message = problem(tool(schema={"options": {"silent": "boolean"}}))
    assert message == "schema.options.silent: Input should be a mapping of fields"
