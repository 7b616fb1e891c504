"""Flow parameters carry any JSON: `$ref` in a schema, an option or a context is data, not a
Prefect block reference, so what `validate` accepts runs as written."""

from __future__ import annotations

from pydantic import BaseModel

from promptdag.api import arun, arun_objective
from promptdag.spec.models import parse_spec
from promptdag.spec.validation import validate_spec


class Author(BaseModel):
    name: str


class Review(BaseModel):
    verdict: str
    author: Author  # a nested model: pydantic writes it as "$ref": "#/$defs/Author"


def spec_with_refs() -> dict:
    schema = Review.model_json_schema()
    assert "$defs" in schema and "$ref" in str(schema)
    return {
        "name": "refs everywhere",
        "config": {
            "model_options": {
                "outputs": {"Review": {"verdict": "good", "author": {"name": "Ada"}}},
                "extra_body": {"$ref": "#/not/a/block"},
            }
        },
        "tasks": [
            {"name": "Review", "prompt": "Review it", "output_schema": schema,
             "context": {"doc": {"$ref": "#/definitions/doc"}}},
            {"name": "Thank", "prompt": "Thank {{ Review.author.name }}"},
        ],
    }


async def test_a_spec_full_of_refs_validates_and_runs_as_written():
    data = spec_with_refs()
    validate_spec(parse_spec(data))
    result = await arun(data)
    assert result.status == "completed", [t.error for t in result.tasks]
    assert result.task("Review").output == {"verdict": "good", "author": {"name": "Ada"}}
    assert "Ada" in (result.task("Thank").prompt or "")


async def test_an_objective_context_with_a_ref_runs():
    result = await arun_objective("Summarise", context={"source": {"$ref": "#/doc"}},
                                  config={"depth": 1})
    assert result.status == "completed" and result.final_answer
