"""The course notebook's formatting, copied as it is, as the reference ftprep must reproduce.

Used by the equality tests and by ``bench/format_bench.py`` (the path ftprep is measured against).
Items are objects with attributes, as in the course; :class:`Item` wraps a record dict the same way.
"""

import json


class Item:
    PREFIX = "Price is $"

    def __init__(self, record):
        self.__dict__.update(record)

    def test_prompt(self):
        return self.prompt.split(self.PREFIX)[0] + self.PREFIX


def messages_for(item):
    system_message = "You estimate prices of items. Reply only with the price, no explanation"
    user_prompt = item.test_prompt().replace(" to the nearest dollar", "").replace("\n\nPrice is $", "")
    return [
        {"role": "system", "content": system_message},
        {"role": "user", "content": user_prompt},
        {"role": "assistant", "content": f"Price is ${item.price:.2f}"},
    ]


def make_jsonl(items):
    result = ""
    for item in items:
        messages = messages_for(item)
        messages_str = json.dumps(messages)
        result += '{"messages": ' + messages_str + "}\n"
    return result.strip()


def write_jsonl(items, filename):
    with open(filename, "w") as f:
        jsonl = make_jsonl(items)
        f.write(jsonl)


# The newer course version, as its issue describes it: no system message, the item's summary.
def messages_for_summary(item):
    return [
        {"role": "user",
         "content": "Estimate the price of this product. Respond with the price, no explanation\n\n" + item.summary},
        {"role": "assistant", "content": f"${item.price:.2f}"},
    ]
