#!/usr/bin/env python3
"""Draws digits on a draw-a-digit page in a real browser and reports what the page answered.

Each digit is drawn as strokes of pointer events on the canvas; the page posts it to /predict by
itself. Prints one JSON object per digit: {"drawn": 7, "answer": "7", "confidence": "99.1%",
"error": ""} and saves a screenshot per digit.

Usage: draw_digits.py URL SCREENSHOT_DIR
"""
import json
import os
import sys

from browser import DIGITS, browser, read_drawn_digit


def main():
    url, screenshots = sys.argv[1], sys.argv[2]
    os.makedirs(screenshots, exist_ok=True)
    driver = browser()
    try:
        driver.get(url)
        for digit, strokes in DIGITS.items():
            answer, confidence, error = read_drawn_digit(driver, strokes)
            driver.save_screenshot(os.path.join(screenshots, "serve-drawn-%d.png" % digit))
            print(json.dumps({"drawn": digit, "answer": answer, "confidence": confidence, "error": error}))
            sys.stdout.flush()
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
