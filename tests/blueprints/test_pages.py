"""GET /paid: the page buyers return to after paying on a provider's page."""

from __future__ import annotations


def test_the_return_page_after_paying_is_a_plain_html_thank_you(client):
    response = client.get("/paid")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "Thank you" in response.get_data(as_text=True)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
