#!/usr/bin/env python3
"""Draws digits on a draw-a-digit page in a real browser and reports what the page answered.

Headless Chromium driven by Selenium: each digit is drawn as strokes of pointer events on the
canvas (#pad), the page posts it to /predict by itself, and the answer is read from #digit once it
changes. Prints one JSON object per digit: {"drawn": 7, "answer": "7", "confidence": "99.1%"} and
saves a screenshot per digit.

Usage: draw_digits.py URL SCREENSHOT_DIR
"""
import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

# Strokes on the 280x280 pad, in pad pixels from its top-left corner.
DIGITS = {
    1: [[(150, 45), (140, 240)]],
    7: [[(70, 60), (210, 60)], [(210, 60), (120, 240)]],
}


def browser():
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,800"):
        options.add_argument(argument)
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def draw(driver, pad, strokes):
    """Each stroke: pointer down at its first point, moves in small steps, pointer up."""
    width = pad.size["width"]
    scale = width / 280.0
    for stroke in strokes:
        actions = ActionBuilder(driver, mouse=PointerInput(interaction.POINTER_MOUSE, "mouse"))
        pointer = actions.pointer_action
        # Offsets are from the element's centre.
        def at(point):
            return int((point[0] - 140) * scale), int((point[1] - 140) * scale)
        x, y = at(stroke[0])
        pointer.move_to(pad, x, y)
        pointer.pointer_down()
        for (start, end) in zip(stroke, stroke[1:]):
            for step in range(1, 21):
                t = step / 20.0
                point = (start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t)
                x, y = at(point)
                pointer.move_to(pad, x, y)
        pointer.pointer_up()
        actions.perform()


def main():
    url, screenshots = sys.argv[1], sys.argv[2]
    os.makedirs(screenshots, exist_ok=True)
    driver = browser()
    try:
        driver.get(url)
        pad = driver.find_element(By.ID, "pad")
        for digit, strokes in DIGITS.items():
            driver.find_element(By.ID, "clear").click()
            draw(driver, pad, strokes)
            # Every stroke's end asks again; wait for the answer to the last one.
            WebDriverWait(driver, 20).until(
                lambda d: d.find_element(By.ID, "digit").text not in ("", "–")
                and d.find_element(By.ID, "input").get_attribute("src"))
            WebDriverWait(driver, 5).until(lambda d: d.execute_script("return window.pendingPredictions === 0"))
            answer = driver.find_element(By.ID, "digit").text
            confidence = driver.find_element(By.ID, "confidence").text
            error = driver.find_element(By.ID, "error").text
            driver.save_screenshot(os.path.join(screenshots, "serve-drawn-%d.png" % digit))
            print(json.dumps({"drawn": digit, "answer": answer, "confidence": confidence, "error": error}))
            sys.stdout.flush()
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
