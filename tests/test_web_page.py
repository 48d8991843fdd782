"""The page at ``/``, driven in a real headless Chromium against a real server on 127.0.0.1.

The server is the transformers-backend app over a tiny random Llama (as in test_server.py), so
answers are deterministic for a seed: what the page shows is compared with what the JSON API
answers for the same request.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from genrec.bundle import Bundle
from tests.browser import Browser, ensure_chromium
from tests.test_server import make_bundle, start_thread_server


@pytest.fixture(scope="module")
def browser():
    exe = ensure_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing and could not be installed (scripts/setup.sh installs it as root)")
        pytest.skip("chromium not installed (apt-get install chromium, as root)")
    b = Browser(exe)
    yield b
    b.close()


@pytest.fixture(scope="module")
def page_server(tmp_path_factory, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    tmp = tmp_path_factory.mktemp("page-server")
    LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                                 vocab_size=len(tokenizer))).save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    bundle = Bundle.load(make_bundle(tmp / "bundle", str(tmp / "model"), "hf", n_gen=2, max_new_tokens=4))
    url, server, thread = start_thread_server(bundle)
    yield url, bundle
    server.should_exit = True
    thread.join(30)


def rows(page) -> list[dict]:
    return page.js("""[...document.querySelectorAll('#items tbody tr')].map(tr => ({
        item_id: tr.dataset.item, title: tr.children[1].textContent, score: Number(tr.children[3].textContent)}))""")


def test_items_search_endpoint(page_server):
    url, bundle = page_server
    word = bundle.catalog[0].title.split()[0]
    data = httpx.get(url + "/items", params={"q": word.upper(), "limit": 5}).json()
    expected = [it for it in bundle.catalog if word.lower() in it.title.lower() or word.lower() in it.item_id.lower()]
    assert data["total"] == len(expected) and 1 <= len(data["items"]) <= 5
    pops = [it["popularity"] for it in data["items"]]
    assert pops == sorted(pops, reverse=True)
    assert all(word.lower() in it["title"].lower() for it in data["items"])
    one = httpx.get(url + "/items", params={"id": bundle.catalog[3].item_id}).json()
    assert one["total"] == 1 and one["items"][0]["title"] == bundle.catalog[3].title
    assert httpx.get(url + "/items", params={"id": "no-such-item"}).json() == {"items": [], "total": 0}
    bad = httpx.get(url + "/items", params={"limit": "0"})
    assert bad.status_code == 422 and bad.json()["field"] == "limit"
    page = httpx.get(url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text  # no external assets


def test_page_search_history_recommend_in_chromium(page_server, browser, tmp_path):
    url, bundle = page_server
    page = browser.open(url + "/")
    page.wait_for("document.body.dataset.ready === '1'")
    assert f"{len(bundle.catalog)} items" in page.js("document.getElementById('info').textContent")

    # Type a word of a title into the search box, as a person would.
    word = bundle.catalog[0].title.split()[0]
    page.js(f"""(() => {{ const q = document.getElementById('q'); q.focus(); q.value = {json.dumps(word)};
                          q.dispatchEvent(new Event('input', {{bubbles: true}})); }})()""")
    titles = page.wait_for(f"""(() => {{ const t = [...document.querySelectorAll('#results li')]
        .map(li => li.firstChild.firstChild.textContent);
        return t.length && t.every(x => x.toLowerCase().includes({json.dumps(word.lower())})) ? t : null; }})()""")
    assert titles[0] in {it.title for it in bundle.catalog}

    # Add the first two results to the history, ask for 5.
    assert page.js("document.getElementById('go').disabled") is True
    page.js("document.querySelectorAll('#results button.add')[0].click()")
    page.js("document.querySelectorAll('#results button.add')[1].click()")
    history = page.js("[...document.querySelectorAll('#history li')].map(li => li.dataset.item)")
    assert len(history) == 2
    page.js("document.getElementById('k').value = '5'")
    page.js("document.getElementById('go').click()")
    page.wait_for("document.getElementById('answer').dataset.done === '1'")
    shown = rows(page)
    path = page.js("document.getElementById('path').textContent")
    reason = page.js("document.getElementById('reason').textContent")
    latency = page.js("document.getElementById('latency').textContent")
    page.screenshot(tmp_path / "page.png")

    direct = httpx.post(url + "/recommend", json={"history": history, "k": 5}, timeout=120).json()
    assert [r["item_id"] for r in shown] == [it["item_id"] for it in direct["items"]]
    assert [r["title"] for r in shown] == [it["title"] for it in direct["items"]]
    assert [r["score"] for r in shown] == pytest.approx([it["score"] for it in direct["items"]], rel=1e-3)
    assert path == direct["path"]
    assert reason == (f"reason: {direct['reason']}" if direct["reason"]
                      else "reason: none (the generative path answered)")
    assert latency.endswith(" ms") and float(latency.split()[0]) > 0
    assert not set(history) & {r["item_id"] for r in shown}


def test_page_link_with_tiny_budget_shows_the_fallback(page_server, browser, tmp_path):
    """A link carrying the request: an unknown id and a 1 ms budget → popularity, reason, unknown id."""
    url, bundle = page_server
    known = bundle.catalog[5].item_id
    page = browser.open(f"{url}/?history={known},no-such-item&k=3&budget_ms=1&go=1")
    page.wait_for("document.getElementById('answer').dataset.done === '1'")
    assert page.js("document.getElementById('path').textContent") == "popularity"
    assert "budget" in page.js("document.getElementById('reason').textContent")
    assert "no-such-item" in page.js("document.getElementById('unknown').textContent")
    assert len(rows(page)) == 3
    titles = page.js("[...document.querySelectorAll('#history li')].map(li => li.firstChild.firstChild.textContent)")
    assert titles == [bundle.catalog[5].title, "(not in the catalog)"]
    page.screenshot(tmp_path / "fallback.png")
    if os.environ.get("GENREC_SCREENSHOTS"):  # to look at the page by eye
        Path(os.environ["GENREC_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        page.screenshot(Path(os.environ["GENREC_SCREENSHOTS"]) / "page_fallback.png")
