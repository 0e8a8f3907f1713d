"""LeanFlask runs a request's hooks as Flask does: the same ones, in the same order, with the same results."""
import pytest
from flask import Blueprint, Flask

from lean_flask import LeanFlask


def recording_app(app_class, events):
    """An app whose every hook, at app and (nested) blueprint level, writes down that it ran."""
    app = app_class(__name__)
    outer, inner = Blueprint("outer", __name__), Blueprint("inner", __name__)

    def hooks(owner, name):
        owner.url_value_preprocessor(lambda endpoint, values: events.append(f"{name} url_value {endpoint}"))
        owner.before_request(lambda: events.append(f"{name} before 1"))
        owner.before_request(lambda: events.append(f"{name} before 2"))
        owner.after_request(lambda response: events.append(f"{name} after 1") or response)
        owner.after_request(lambda response: events.append(f"{name} after 2") or response)
        owner.teardown_request(lambda exc: events.append(f"{name} teardown {type(exc).__name__}"))

    hooks(app, "app")
    hooks(outer, "outer")
    hooks(inner, "inner")

    @inner.get("/view")
    def view():
        events.append("view")
        return "viewed"

    @inner.get("/broken")
    def broken():
        raise KeyError("broken")

    @app.get("/early")
    def early():
        return "not reached"

    outer.register_blueprint(inner, url_prefix="/inner")
    app.register_blueprint(outer, url_prefix="/outer")
    return app


# Flask's order: url_value preprocessors, then before hooks, app first, then outward-in blueprints; after and
# teardown hooks innermost blueprint first, each level's in reverse order of registration.
EVENTS_OF_A_VIEW = [
    "app url_value outer.inner.view", "outer url_value outer.inner.view", "inner url_value outer.inner.view",
    "app before 1", "app before 2", "outer before 1", "outer before 2", "inner before 1", "inner before 2", "view",
    "inner after 2", "inner after 1", "outer after 2", "outer after 1", "app after 2", "app after 1",
    "inner teardown NoneType", "outer teardown NoneType", "app teardown NoneType"]
EVENTS_OF_AN_UNMATCHED_PATH = ["app url_value None", "app before 1", "app before 2", "app after 2", "app after 1",
                               "app teardown NoneType"]


@pytest.mark.parametrize("app_class", [Flask, LeanFlask])
def test_a_views_hooks_run_in_flasks_order_twice_over(app_class):
    events = []
    client = recording_app(app_class, events).test_client()
    for _ in range(2):  # the second request runs the hooks LeanFlask looked up for the first
        events.clear()
        response = client.get("/outer/inner/view")
        assert (response.status_code, response.get_data(as_text=True)) == (200, "viewed")
        assert events == EVENTS_OF_A_VIEW


@pytest.mark.parametrize("app_class", [Flask, LeanFlask])
def test_an_unmatched_path_runs_the_apps_hooks_alone(app_class):
    events = []
    client = recording_app(app_class, events).test_client()
    client.get("/outer/inner/view")
    events.clear()
    assert client.get("/outer/inner/nothing").status_code == 404
    assert events == EVENTS_OF_AN_UNMATCHED_PATH
    events.clear()
    assert client.post("/outer/inner/view").status_code == 405
    assert events == EVENTS_OF_AN_UNMATCHED_PATH


@pytest.mark.parametrize("app_class", [Flask, LeanFlask])
def test_a_before_hook_that_answers_stops_the_rest_and_the_view(app_class):
    events = []
    app = recording_app(app_class, events)
    app.before_request_funcs[None].insert(1, lambda: ("answered early", 409))
    response = app.test_client().get("/outer/inner/view")
    assert (response.status_code, response.get_data(as_text=True)) == (409, "answered early")
    assert events == ["app url_value outer.inner.view", "outer url_value outer.inner.view",
                      "inner url_value outer.inner.view", "app before 1", "inner after 2", "inner after 1",
                      "outer after 2", "outer after 1", "app after 2", "app after 1", "inner teardown NoneType",
                      "outer teardown NoneType", "app teardown NoneType"]


@pytest.mark.parametrize("app_class", [Flask, LeanFlask])
def test_teardown_hooks_are_handed_the_views_error(app_class):
    events = []
    app = recording_app(app_class, events)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/outer/inner/broken")
    assert response.status_code == 500
    assert events[-3:] == ["inner teardown KeyError", "outer teardown KeyError", "app teardown KeyError"]


@pytest.mark.parametrize("app_class", [Flask, LeanFlask])
def test_options_is_answered_automatically_with_the_allowed_methods(app_class):
    events = []
    response = recording_app(app_class, events).test_client().options("/outer/inner/view")
    assert response.status_code == 200
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert "view" not in events and events[-1] == "app teardown NoneType"


def test_a_hook_added_before_the_first_request_counts_even_after_hooks_ran_by_hand():
    """Hooks run outside a served request (a test's request context) are not kept: the app may still get more."""
    events = []
    app = recording_app(LeanFlask, events)
    with app.test_request_context("/outer/inner/view"):
        app.preprocess_request()
    app.before_request(lambda: events.append("app before 3"))
    events.clear()
    app.test_client().get("/outer/inner/view")
    assert events[3:6] == ["app before 1", "app before 2", "app before 3"]
    with pytest.raises(AssertionError):  # Flask itself: no new hook once a request was served
        app.before_request(lambda: None)
