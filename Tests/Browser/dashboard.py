#!/usr/bin/env python3
"""Watches a training run's live dashboard in a real browser.

Waits until the loss curve has at least two points and the worker table lists WORKERS workers in
state "training", then until the first evaluation's confusion matrix is shown, and asks the draw box
what a drawn 1 is (the weights of the moment answer). Saves screenshots and prints one JSON object:
{"points": N, "workers": [...], "confusion_rows": 10, "mistakes": M, "drawn": 1, "answer": "1", ...}.

Usage: dashboard.py URL WORKERS SCREENSHOT_DIR
"""
import json
import os
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from browser import DIGITS, browser, read_drawn_digit


def main():
    url, workers, screenshots = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.makedirs(screenshots, exist_ok=True)
    driver = browser()
    try:
        driver.set_window_size(1300, 2000)
        driver.get(url)
        WebDriverWait(driver, 120).until(
            lambda d: int(d.find_element(By.ID, "chart-loss").get_attribute("data-points") or 0) >= 2)
        # The page redraws on every state, so it is read in one script call, not element by element.
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script("return document.querySelectorAll('#workers tbody tr.training').length")
            >= workers)
        points = int(driver.execute_script("return document.getElementById('chart-loss').getAttribute('data-points')"))
        names = driver.execute_script(
            "return Array.from(document.querySelectorAll('#workers tbody tr')).map(function (row) {"
            " return row.cells[0].textContent; })")
        # Wait for the first per-worker timings, then read the compute and transfer columns.
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script("return Array.from(document.querySelectorAll('#workers tbody tr')).every("
                                       "function (row) { return row.cells[8].textContent !== '\u2013'; })"))
        computes = driver.execute_script(
            "return Array.from(document.querySelectorAll('#workers tbody tr')).map(function (row) {"
            " return [row.cells[1].textContent, row.cells[8].textContent, row.cells[9].textContent]; })")
        driver.save_screenshot(os.path.join(screenshots, "dashboard-training.png"))
        # The first epoch's evaluation: the confusion matrix (a header row and ten rows) and the gallery.
        WebDriverWait(driver, 300).until(
            lambda d: d.execute_script("return document.querySelectorAll('#confusion tr').length") == 11)
        confusion_rows = driver.execute_script("return document.querySelectorAll('#confusion tr').length") - 1
        # The gallery and its loaded images, counted in one script call (a later evaluation may replace
        # the gallery at any moment); waits until every image of the gallery shown has loaded.
        def gallery(d):
            counts = d.execute_script(
                "var images = Array.from(document.querySelectorAll('#mistakes img'));"
                "return [images.length, images.filter(function (i) {"
                " return i.complete && i.naturalWidth === 28; }).length];")
            return counts if counts[0] > 0 and counts[0] == counts[1] else None
        mistakes, loaded = WebDriverWait(driver, 60).until(gallery)
        answer, confidence, error = read_drawn_digit(driver, DIGITS[1])
        driver.save_screenshot(os.path.join(screenshots, "dashboard-evaluated.png"))
        print(json.dumps({
            "points": points, "workers": names, "address_compute_transfer": computes, "confusion_rows": confusion_rows, "mistakes": mistakes,
            "mistake_images_loaded": loaded, "drawn": 1, "answer": answer, "confidence": confidence, "error": error,
            "states": driver.execute_script("return window.dashboardStates")}))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
