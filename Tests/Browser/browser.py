"""What the browser tests share: headless Chromium from Debian driven by Selenium, and drawing
strokes of pointer events on the draw box's canvas (#pad)."""
import os

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


def read_drawn_digit(driver, strokes):
    """Clears the pad, draws `strokes`, waits for the page's answer to the last stroke; returns the
    digit shown, the confidence and any error shown."""
    pad = driver.find_element(By.ID, "pad")
    driver.find_element(By.ID, "clear").click()
    draw(driver, pad, strokes)
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "digit").text not in ("", "\u2013")
        and d.find_element(By.ID, "input").get_attribute("src"))
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return window.pendingPredictions === 0"))
    return (driver.find_element(By.ID, "digit").text, driver.find_element(By.ID, "confidence").text,
            driver.find_element(By.ID, "error").text)
